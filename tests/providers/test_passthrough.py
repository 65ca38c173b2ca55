"""The passthrough scanner and the OpenAI backend's raw streams, on scripted bytes."""

from __future__ import annotations

import functools
from typing import Any

import orjson
import pytest

from thrifty.config import Deployment
from thrifty.errors import UpstreamConnectionError, UpstreamError
from thrifty.providers.openai import OpenAIBackend, parse_chunk
from thrifty.providers.passthrough import Passthrough, plain, text_chars
from thrifty.transport.mock import MockResponse, MockTransport
from thrifty.types import ChatRequest, RawEvents, parsed

OURS = "chatcmpl-ours"
PARSE = functools.partial(parse_chunk, secrets=())


def event(data: Any, *, spaced: bool = False) -> bytes:
    body = orjson.dumps(data) if not spaced else orjson.dumps(data).replace(b'":', b'": ')
    return b"data: " + body + b"\n\n"


def chunk(content: str | None = None, finish: str | None = None, **more: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "up-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **more,
    }


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
BODY = (
    event(chunk("Hel"))
    + event(chunk("lo"))
    + event(chunk(None, "stop"))
    + event({"id": "up-1", "choices": [], "usage": USAGE})
    + b"data: [DONE]\n\n"
)


def run(pieces: list[bytes]) -> tuple[bytes, Passthrough, int]:
    scanner = Passthrough(OURS, PARSE)
    out, chars = b"", 0
    for piece in [*pieces, None]:
        events = scanner.feed(piece) if piece is not None else scanner.flush()
        if events is not None:
            out += events.data
            chars += events.chars
    return out, scanner, chars


def payloads(out: bytes) -> list[Any]:
    return [orjson.loads(e[6:]) for e in out.split(b"\n\n") if e]


@pytest.mark.parametrize("size", [1, 7, 64, len(BODY)])
def test_whole_events_pass_with_the_request_id_whatever_the_reads(size: int) -> None:
    out, scanner, chars = run([BODY[i : i + size] for i in range(0, len(BODY), size)])
    forwarded = payloads(out)
    assert [c["choices"][0]["delta"].get("content") for c in forwarded] == ["Hel", "lo", None]
    assert {c["id"] for c in forwarded} == {OURS}
    assert scanner.usage is not None and scanner.usage.completion_tokens == 2
    assert scanner.done and scanner.finished and chars == 5


def test_plain_content_is_forwarded_byte_for_byte_but_the_id() -> None:
    scanner = Passthrough(OURS, PARSE)
    first = scanner.feed(event(chunk("a")))
    body = event(chunk("b", logprobs=None)) + event(chunk("c"))
    later = scanner.feed(body)
    assert first is not None and later is not None
    assert later.data == body.replace(b'"id":"up-1"', b'"id":"chatcmpl-ours"')
    assert plain(body) and not plain(event({"id": "x", "choices": [], "usage": USAGE}))


def test_spaced_json_is_scanned_too() -> None:
    body = BODY.replace(b"data: [DONE]\n\n", b"")
    spaced = b"".join(event(p, spaced=True) for p in payloads(body))
    out, scanner, _ = run([spaced[:40], spaced[40:]])
    assert {c["id"] for c in payloads(out)} == {OURS}
    assert scanner.usage is not None and scanner.usage.total_tokens == 5


def test_usage_inside_a_content_chunk_is_taken_out_as_the_parsed_path_does() -> None:
    out, scanner, _ = run([event(chunk("a")), event(chunk("b", "stop", usage=USAGE)), b"data: [DONE]\n\n"])
    last = payloads(out)[-1]
    assert "usage" not in last and last["id"] == OURS and last["choices"][0]["delta"] == {"content": "b"}
    assert scanner.usage is not None and scanner.usage.prompt_tokens == 3


def test_comments_named_events_and_crlf_framing_are_handled() -> None:
    body = b": keep-alive\r\n\r\n" + event(chunk("x")).replace(b"\n", b"\r\n") + b"data: [DONE]\r\n\r\n"
    out, scanner, _ = run([body[:9], body[9:]])
    assert [c["choices"][0]["delta"]["content"] for c in payloads(out)] == ["x"]
    assert b"keep-alive" not in out and scanner.done


def test_nothing_after_done_is_forwarded() -> None:
    out, _, _ = run([BODY + event(chunk("late"))])
    assert b"late" not in out


def test_an_error_event_mid_stream_raises() -> None:
    scanner = Passthrough(OURS, PARSE)
    scanner.feed(event(chunk("a")))
    with pytest.raises(UpstreamError, match="overloaded"):
        scanner.feed(event({"error": {"message": "overloaded", "type": "server_error"}}))


def test_a_model_writing_about_sse_does_not_end_the_stream() -> None:
    text = 'data: [DONE] and "usage":{"x":1} and "error": no'
    out, scanner, _ = run([event(chunk("a")), event(chunk(text)), event(chunk(None, "stop"))])
    assert payloads(out)[1]["choices"][0]["delta"]["content"] == text
    assert not scanner.done and scanner.usage is None and scanner.finished


def test_an_upstream_without_ids_gets_the_request_id() -> None:
    anonymous = {k: v for k, v in chunk("a").items() if k != "id"}
    out, _, _ = run([event(anonymous), event(anonymous)])
    assert [c["id"] for c in payloads(out)] == [OURS, OURS]


def test_text_chars_counts_content_and_tool_arguments() -> None:
    call = {"index": 0, "function": {"name": "f", "arguments": '{"a":1}'}}
    tools = event({"id": "u", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
    assert text_chars(event(chunk("héllo"))) == len('"héllo"'.encode()) - 2
    assert text_chars(tools) == 1 + len(b'{\\"a\\":1}')


def backend(body: list[bytes | Exception]) -> tuple[OpenAIBackend, MockTransport]:
    transport = MockTransport(lambda _: MockResponse(chunks=body))
    deployment = Deployment(name="d", provider="openai", model="m", api_base="http://up/v1")
    return OpenAIBackend(deployment, transport=transport), transport


async def collect(model: OpenAIBackend, raw: bool) -> list[Any]:
    request = ChatRequest(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True, raw_stream=raw
    )
    return [piece async for piece in model.stream(request)]


async def test_the_backend_streams_raw_events_then_a_parsed_usage_chunk() -> None:
    model, _ = backend([BODY])
    pieces = await collect(model, raw=True)
    assert all(isinstance(p, RawEvents) for p in pieces[:-1]) and pieces[:-1]
    assert isinstance(pieces[-1], dict) and pieces[-1]["usage"]["completion_tokens"] == 2
    assert pieces[-1]["choices"] == []


async def test_the_backend_without_upstream_usage_estimates_from_the_text() -> None:
    model, _ = backend([event(chunk("hello world")), event(chunk(None, "stop")), b"data: [DONE]\n\n"])
    request = ChatRequest(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True, raw_stream=True
    )
    pieces = [piece async for piece in model.stream(request)]
    assert parsed(pieces[-1])["usage"]["completion_tokens"] > 0 and request.trace.usage_estimated


async def test_a_raw_stream_that_stops_unfinished_is_a_connection_error() -> None:
    model, _ = backend([event(chunk("a"))])
    with pytest.raises(UpstreamConnectionError):
        await collect(model, raw=True)


async def test_raw_and_parsed_streams_carry_the_same_chunks() -> None:
    model, _ = backend([BODY[:50], BODY[50:]])
    raw = await collect(model, raw=True)
    parsed = await collect(model, raw=False)
    from_raw = [c for p in raw[:-1] for c in payloads(p.data)]
    assert [c["choices"] for c in from_raw] == [c["choices"] for c in parsed[:-1]]
    assert raw[-1]["usage"] == parsed[-1]["usage"]
