"""Fixture loading and SSE building shared by the provider tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thrifty.config import Deployment
from thrifty.types import ChatRequest

FIXTURES = Path(__file__).parent.parent / "fixtures" / "providers"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def request_from(data: dict[str, Any], **overrides: Any) -> ChatRequest:
    fields: dict[str, Any] = {k: data[k] for k in ("model", "messages", "params", "extra") if k in data}
    return ChatRequest(**{**fields, **overrides})


def sse(events: list[Any], *, named: bool = False) -> bytes:
    """An SSE body: each event is a JSON-able object, a raw string, or (with named) {event, data}."""
    out = []
    for item in events:
        if named:
            out.append(f"event: {item['event']}\ndata: {json.dumps(item['data'])}\n\n")
        else:
            data = item if isinstance(item, str) else json.dumps(item)
            out.append(f"data: {data}\n\n")
    return "".join(out).encode()


def deployment(provider: str = "openai", **kw: Any) -> Deployment:
    defaults: dict[str, Any] = {
        "name": f"test/{provider}",
        "provider": provider,
        "model": "upstream-model",
        "api_base": "http://upstream.test/v1",
        "api_key": "sk-test",
    }
    return Deployment(**{**defaults, **kw})


def without_created(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "created"}
