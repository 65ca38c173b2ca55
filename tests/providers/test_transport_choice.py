"""Which shared transport a deployment uses, and a clear error for an unknown one."""

from __future__ import annotations

import pytest

from thrifty.config import Deployment
from thrifty.errors import ConfigError
from thrifty.providers.http import deployment_transport
from thrifty.transport.aio import AiohttpTransport
from thrifty.transport.raw import RawTransport


def _dep(**options: object) -> Deployment:
    return Deployment(
        name="d", provider="openai", model="m", api_base="http://127.0.0.1:1/v1", options=options
    )


def test_raw_by_default_aiohttp_on_request_and_shared() -> None:
    assert isinstance(deployment_transport(_dep()), RawTransport)
    chosen = deployment_transport(_dep(transport="aiohttp"))
    assert isinstance(chosen, AiohttpTransport)
    assert deployment_transport(_dep(transport="aiohttp")) is chosen  # one pool per process


def test_unknown_transport_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="options.transport must be one of raw, aiohttp"):
        deployment_transport(_dep(transport="curl"))
