from __future__ import annotations

import subprocess
import sys

import pytest

from thrifty.backend import Backend
from thrifty.config import Deployment
from thrifty.errors import ConfigError
from thrifty.providers import build, kinds, register
from thrifty.providers.anthropic import AnthropicBackend
from thrifty.providers.openai import OpenAIBackend
from thrifty.testing import FakeBackend, chat

from .helpers import deployment


def test_builtin_kinds_build_their_backends() -> None:
    assert {"openai", "anthropic", "local", "fake"} <= set(kinds())
    assert isinstance(build(deployment("openai")), OpenAIBackend)
    assert isinstance(build(deployment("anthropic")), AnthropicBackend)


async def test_fake_kind_answers_from_its_script() -> None:
    backend = build(Deployment(name="f1", provider="fake", model="x", options={"script": "hello there"}))
    assert isinstance(backend, FakeBackend) and backend.name == "f1"
    assert (await backend.complete(chat("hi"))).text == "hello there"


def test_unknown_kind_and_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown provider kind 'nope'"):
        build(Deployment(name="d", provider="nope", model="x"))
    with pytest.raises(ConfigError, match="options.headers"):
        build(deployment(options={"headers": ["x"]}))
    with pytest.raises(ConfigError, match="api_base"):
        build(deployment(api_base=None))


def test_plugins_register_through_the_same_door() -> None:
    def make(dep: Deployment) -> Backend:
        return FakeBackend("from plugin", name=dep.name)

    register("test-plugin", make)
    try:
        assert build(Deployment(name="p", provider="test-plugin", model="x")).name == "p"
        with pytest.raises(ValueError):
            register("test-plugin", make)
    finally:
        register("test-plugin", lambda dep: FakeBackend(name=dep.name), replace=True)


def test_importing_providers_loads_no_heavy_modules() -> None:
    code = (
        "import sys, thrifty.providers; "
        "print(sorted(m for m in ('aiohttp', 'llama_cpp', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
