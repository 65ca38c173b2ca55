"""How thrifty reaches an upstream over HTTP: one small interface and its implementations.

    base.py   Transport (the interface), HttpRequest, HttpResponse, Timeouts, translate_error
    raw.py    RawTransport: lean HTTP/1.1 on asyncio and httptools (the default)
    aio.py    AiohttpTransport: aiohttp's client, on request (``options.transport: aiohttp``)
    mock.py   MockTransport: answers from a function, for tests and fault injection

Nothing here knows about providers or LLMs; providers import this package,
never the other way round. Each implementation loads on first use.
"""

from __future__ import annotations

import functools

from .base import (
    HttpRequest,
    HttpResponse,
    SharedTransport,
    StreamResponse,
    Timeouts,
    Transport,
    translate_error,
)

TRANSPORTS = ("raw", "aiohttp")


@functools.cache
def shared_transport(kind: str = "raw") -> Transport:
    """The process-wide pooled transport remote backends share (``options.transport``).

    ``raw`` (lean HTTP/1.1 on httptools, :mod:`.raw`) is the default: through
    ``thrifty serve`` it carried 1.56x the requests/s of aiohttp's client
    (docs/bench/providers.md). ``aiohttp`` stays available for what raw lacks
    (HTTP/2 is neither's; both ignore proxy variables).
    """
    if kind == "aiohttp":
        from .aio import AiohttpTransport

        return AiohttpTransport()
    from .raw import RawTransport

    return RawTransport()


__all__ = [
    "TRANSPORTS",
    "HttpRequest",
    "HttpResponse",
    "SharedTransport",
    "StreamResponse",
    "Timeouts",
    "Transport",
    "shared_transport",
    "translate_error",
]
