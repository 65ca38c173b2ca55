"""A programmable fake OpenAI-compatible upstream: real HTTP on loopback.

For tests and benchmarks of everything that talks to a model server. It serves
``POST /v1/chat/completions`` (plain JSON or SSE), ``POST /v1/responses`` (the
Responses API, answered with the same words plus a ``reasoning`` item no chat
translation makes, so a test can tell it was passed through), ``GET /v1/models`` and
``GET /health`` (and ``/ready``), and misbehaves on demand: latency drawn from a seeded
distribution, a random error rate, bursts of 429 with ``Retry-After``,
connection resets, streams dropped after K chunks, a slow first byte, an
unhealthy health check. Behaviour changes at run time through
:meth:`FakeUpstream.configure` or ``POST /_control`` (JSON), and the server
counts what it saw (``GET /_control`` or :attr:`FakeUpstream.stats`).

In process::

    async with FakeUpstream(latency_ms=5, chunks=20) as up:
        ...  # point a client at up.url (".../v1")
        up.configure(error_rate=0.3)

As a process::

    python -m thrifty.fakeupstream --port 9100 --latency-ms 0 --chunks 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import socket
import struct
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from aiohttp import web

LATENCY_KINDS = ("fixed", "uniform", "lognormal")


@dataclass
class Behaviour:
    """How a fake upstream answers; every field can change at run time."""

    latency: str = "fixed"  # fixed | uniform | lognormal
    latency_ms: float = 0.0  # fixed value, uniform low bound, or lognormal median
    latency_max_ms: float = 0.0  # uniform high bound
    latency_sigma: float = 0.5  # lognormal shape
    seed: int = 0
    first_byte_ms: float = 0.0  # extra wait before any byte (headers) is sent
    chunk_delay_ms: float = 0.0  # wait between stream chunks
    chunks: int = 8  # content chunks per stream; words in a plain answer
    text: str = "ok"  # words of the answer, repeated to fill `chunks`
    error_rate: float = 0.0  # share of requests answered with `error_status`
    error_status: int = 500
    burst_429: int = 0  # the next N requests get 429 with Retry-After
    retry_after: float = 1.0
    reset_rate: float = 0.0  # share of requests whose connection is reset
    drop_after_chunks: int | None = None  # streams are cut after K chunks
    healthy: bool = True  # GET /health answers 200 or 503
    model: str | None = None  # model name reported; default: the request's
    tool_arguments: str = "{}"  # the arguments of the tool call answered to a request with tools
    json_content: str | None = None  # the answer to a request with a response_format; default: the words

    def check(self) -> None:
        """Raise ValueError naming the first field that makes no sense."""
        if self.latency not in LATENCY_KINDS:
            raise ValueError(f"latency must be one of {', '.join(LATENCY_KINDS)}")
        for name in ("latency_ms", "latency_max_ms", "first_byte_ms", "chunk_delay_ms", "retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("error_rate", "reset_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.chunks < 1:
            raise ValueError("chunks must be >= 1")
        if self.burst_429 < 0:
            raise ValueError("burst_429 must be >= 0")
        if not 100 <= self.error_status <= 599:
            raise ValueError("error_status must be an HTTP status")


@dataclass
class Stats:
    """What the server saw since start (or the last reset)."""

    requests: int = 0  # chat completion requests received
    streams: int = 0
    in_flight: int = 0
    in_flight_max: int = 0
    errors: int = 0  # answered with error_status
    rate_limited: int = 0
    resets: int = 0
    drops: int = 0
    completed: int = 0
    health_checks: int = 0
    models_seen: dict[str, int] = field(default_factory=dict)
    responses: int = 0  # POST /v1/responses received
    last_responses_body: dict[str, Any] | None = None


_FIELDS = {f.name for f in fields(Behaviour)}


class FakeUpstream:
    """One fake model server on 127.0.0.1; an async context manager."""

    def __init__(
        self, *, port: int = 0, host: str = "127.0.0.1", name: str = "fake-upstream", **behaviour: Any
    ) -> None:
        self.host = host
        self.port = port
        self.name = name
        self.behaviour = Behaviour()
        self.stats = Stats()
        self._rng = random.Random(0)
        self._runner: web.AppRunner | None = None
        self.configure(**behaviour)

    @property
    def url(self) -> str:
        """The OpenAI base URL, ending in ``/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    def configure(self, **changes: Any) -> Behaviour:
        """Change behaviour now; unknown or invalid fields raise ValueError."""
        unknown = set(changes) - _FIELDS
        if unknown:
            raise ValueError(f"unknown behaviour field(s): {', '.join(sorted(unknown))}")
        updated = replace(self.behaviour, **changes)
        updated.check()
        if "seed" in changes:
            self._rng = random.Random(updated.seed)
        self.behaviour = updated
        return updated

    def reset_stats(self) -> None:
        in_flight = self.stats.in_flight
        self.stats = Stats(in_flight=in_flight, in_flight_max=in_flight)

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/health", self._health)
        app.router.add_get("/ready", self._health)
        app.router.add_get("/_control", self._control_get)
        app.router.add_post("/_control", self._control_post)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0, handler_cancellation=True
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])

    async def aclose(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- handlers -------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            return _error(400, "request body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' must be a list")
        b = self.behaviour
        st = self.stats
        st.requests += 1
        model = b.model or str(body.get("model") or "fake")
        st.models_seen[model] = st.models_seen.get(model, 0) + 1
        st.in_flight += 1
        st.in_flight_max = max(st.in_flight_max, st.in_flight)
        try:
            if b.first_byte_ms:
                await asyncio.sleep(b.first_byte_ms / 1000)
            failure = self._failure(request, b)
            if failure is not None:
                return failure
            await asyncio.sleep(self._latency(b))
            if body.get("stream"):
                st.streams += 1
                return await self._stream(request, body, model, b)
            answer = _answer(body, b)
            payload = _completion(model, answer, _prompt_tokens(body))
            st.completed += 1
            return web.Response(
                body=orjson.dumps(payload),
                content_type="application/json",
                headers={"x-upstream-name": self.name},
            )
        finally:
            st.in_flight -= 1

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API: the chat answer to the same request, in the Responses shape."""
        from aiohttp import web

        from .errors import InvalidRequest
        from .translate.responses import ResponseStream, chat_body, response_object

        try:
            body = await request.json(loads=orjson.loads)
            chat = chat_body(body).chat if isinstance(body, dict) else None
        except (ValueError, InvalidRequest) as exc:
            return _error(400, f"not a Responses request: {exc}")
        if chat is None:
            return _error(400, "the body must be a JSON object")
        b = self.behaviour
        self.stats.responses += 1
        self.stats.last_responses_body = body
        failure = self._failure(request, b)
        if failure is not None:
            return failure
        await asyncio.sleep(self._latency(b))
        model = b.model or str(body["model"])
        answer = _answer(chat, b)
        rid = "resp_up" + uuid.uuid4().hex[:20]
        completion = _completion(model, answer, _prompt_tokens(chat))
        reasoning = {"type": "reasoning", "id": "rs_up" + rid[7:], "summary": []}
        if not body.get("stream"):
            response = response_object(completion, body, rid, int(time.time()))
            response["output"].insert(0, reasoning)
            self.stats.completed += 1
            return web.json_response(response, dumps=lambda v: orjson.dumps(v).decode())
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        events = ResponseStream(body, rid, int(time.time()))
        frames = events.start()
        for chunk in _stream_chunks(rid, model, answer, _prompt_tokens(chat)):
            frames.extend(events.feed(chunk))
        frames.extend(events.finish())
        for event in frames:
            await resp.write(f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n")
        await resp.write_eof()
        self.stats.completed += 1
        return resp

    def _failure(self, request: web.Request, b: Behaviour) -> web.StreamResponse | None:
        """Decide whether this request fails before answering, and how."""
        from aiohttp import web

        if b.burst_429 > 0:
            b.burst_429 -= 1
            self.stats.rate_limited += 1
            return _error(
                429, "rate limited (fake burst)", headers={"retry-after": _fmt_seconds(b.retry_after)}
            )
        if b.reset_rate and self._rng.random() < b.reset_rate:
            self.stats.resets += 1
            _reset(request)
            return web.Response(status=500)
        if b.error_rate and self._rng.random() < b.error_rate:
            self.stats.errors += 1
            return _error(b.error_status, f"fake upstream error {b.error_status}")
        return None

    def _latency(self, b: Behaviour) -> float:
        if b.latency == "uniform":
            return self._rng.uniform(b.latency_ms, max(b.latency_ms, b.latency_max_ms)) / 1000
        if b.latency == "lognormal" and b.latency_ms > 0:
            return self._rng.lognormvariate(math.log(b.latency_ms), b.latency_sigma) / 1000
        return b.latency_ms / 1000

    async def _stream(
        self, request: web.Request, body: dict[str, Any], model: str, b: Behaviour
    ) -> web.StreamResponse:
        from aiohttp import web

        answer = _answer(body, b)
        resp = web.StreamResponse(
            headers={
                "content-type": "text/event-stream",
                "cache-control": "no-cache",
                "x-upstream-name": self.name,
            }
        )
        await resp.prepare(request)
        rid = "chatcmpl-" + uuid.uuid4().hex[:24]
        for i, chunk in enumerate(_stream_chunks(rid, model, answer, _prompt_tokens(body))):
            if b.drop_after_chunks is not None and i >= b.drop_after_chunks:
                self.stats.drops += 1
                _reset(request)
                return resp
            if i and b.chunk_delay_ms:
                await asyncio.sleep(b.chunk_delay_ms / 1000)
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        self.stats.completed += 1
        return resp

    async def _models(self, request: web.Request) -> web.Response:
        from aiohttp import web

        model = self.behaviour.model or "fake"
        data = {
            "object": "list",
            "data": [{"id": model, "object": "model", "created": 0, "owned_by": self.name}],
        }
        return web.Response(body=orjson.dumps(data), content_type="application/json")

    async def _health(self, request: web.Request) -> web.Response:
        from aiohttp import web

        self.stats.health_checks += 1
        if not self.behaviour.healthy:
            return web.Response(status=503, text="unhealthy")
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    async def _control_get(self, request: web.Request) -> web.Response:
        from aiohttp import web

        data = {"name": self.name, "behaviour": asdict(self.behaviour), "stats": asdict(self.stats)}
        return web.Response(body=orjson.dumps(data), content_type="application/json")

    async def _control_post(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json(loads=orjson.loads)
        except ValueError:
            return _error(400, "control body is not JSON")
        if not isinstance(changes, dict):
            return _error(400, "control body must be a JSON object")
        if changes.pop("reset_stats", False):
            self.reset_stats()
        try:
            self.configure(**changes)
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        return await self._control_get(request)


# -- pure helpers ----------------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    from aiohttp import web

    kind = (
        "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    )
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _reset(request: web.Request) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed server would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _prompt_tokens(body: dict[str, Any]) -> int:
    return sum(max(1, len(_text(m).split())) for m in body["messages"] if isinstance(m, dict))


def _answer(body: dict[str, Any], b: Behaviour) -> dict[str, Any]:
    """The assistant message: a tool call, a tool-result echo, or `chunks` words."""
    messages = body["messages"]
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    tools = body.get("tools")
    if tools and last.get("role") == "user":
        fn = (tools[0].get("function") or {}) if isinstance(tools[0], dict) else {}
        call = {
            "id": "call_" + uuid.uuid4().hex[:12],
            "type": "function",
            "function": {"name": str(fn.get("name", "tool")), "arguments": b.tool_arguments},
        }
        return {"content": None, "tool_calls": [call], "pieces": []}
    if b.json_content is not None and body.get("response_format") and last.get("role") != "tool":
        half = len(b.json_content) // 2
        pieces = [b.json_content[:half], b.json_content[half:]] if half else [b.json_content]
        return {"content": b.json_content, "tool_calls": None, "pieces": pieces}
    words = b.text.split() or ["ok"]
    if last.get("role") == "tool":
        words = ["tool", "result:", *(_text(last).split() or [""])]
    pieces = [words[i % len(words)] for i in range(max(b.chunks, len(words)))]
    pieces = [p if i == 0 else " " + p for i, p in enumerate(pieces)]
    return {"content": "".join(pieces), "tool_calls": None, "pieces": pieces}


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(model: str, answer: dict[str, Any], prompt: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer["content"]}
    finish = "stop"
    if answer["tool_calls"]:
        message["tool_calls"] = answer["tool_calls"]
        finish = "tool_calls"
    completion = max(1, len(answer["pieces"]))
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": _usage(prompt, completion),
    }


def _stream_chunks(rid: str, model: str, answer: dict[str, Any], prompt: int) -> list[dict[str, Any]]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    out = [chunk({"role": "assistant", "content": ""})]
    finish = "stop"
    if answer["tool_calls"]:
        for i, call in enumerate(answer["tool_calls"]):  # as real servers do: the call, then its arguments
            arguments = call["function"]["arguments"]
            head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
            out.append(chunk({"tool_calls": [{"index": i, **head}]}))
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                if piece:
                    out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
        finish = "tool_calls"
    out.extend(chunk({"content": piece}) for piece in answer["pieces"])
    out.append(chunk({}, finish))
    completion = max(1, len(answer["pieces"]))
    out.append(
        {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage(prompt, completion),
        }
    )
    return out


# -- command line ----------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m thrifty.fakeupstream",
        description="Run a programmable fake OpenAI-compatible upstream.",
    )
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default="fake-upstream")
    p.add_argument("--latency", choices=LATENCY_KINDS, default="fixed")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--latency-max-ms", type=float, default=0.0)
    p.add_argument("--latency-sigma", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-byte-ms", type=float, default=0.0)
    p.add_argument("--chunk-delay-ms", type=float, default=0.0)
    p.add_argument("--chunks", type=int, default=8)
    p.add_argument("--text", default="ok")
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--error-status", type=int, default=500)
    p.add_argument("--reset-rate", type=float, default=0.0)
    p.add_argument("--drop-after-chunks", type=int, default=None)
    p.add_argument("--model", default=None)
    p.add_argument(
        "--tool-arguments", default="{}", help="arguments of the tool call answered when tools are sent"
    )
    p.add_argument("--json-content", default=None, help="the answer when a response_format is sent")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    behaviour = {k: v for k, v in vars(args).items() if k in _FIELDS}
    async with FakeUpstream(port=args.port, host=args.host, name=args.name, **behaviour) as up:
        print(f"fake upstream {up.name} listening on {up.url}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(_serve(args))


if __name__ == "__main__":
    main()
