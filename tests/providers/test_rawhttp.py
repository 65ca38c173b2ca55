"""RawTransport against real loopback servers: the fake upstream and small scripted ones."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from thrifty.errors import RateLimited, UpstreamConnectionError
from thrifty.fakeupstream import FakeUpstream
from thrifty.providers.http import HttpClient
from thrifty.providers.openai import OpenAIBackend
from thrifty.testing import chat
from thrifty.transport import HttpRequest, Transport
from thrifty.transport.aio import AiohttpTransport
from thrifty.transport.raw import RawTransport
from thrifty.types import Trace, parsed

from .helpers import deployment

BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
STREAM_BODY = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})


@dataclass
class Seen:
    url: str = ""
    connections: int = 0
    requests: int = 0


# answer(writer, request number overall, request number on this connection) -> keep the connection open?
Answer = Callable[[asyncio.StreamWriter, int, int], Awaitable[bool]]


@asynccontextmanager
async def raw_server(answer: Answer, tls: ssl.SSLContext | None = None) -> AsyncIterator[Seen]:
    """A tiny HTTP/1.1 server that reads requests and lets `answer` write raw bytes back."""
    seen = Seen()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        on_this = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                seen.requests += 1
                on_this += 1
                if not await answer(writer, seen.requests, on_this):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    seen.url = (
        f"{'https' if tls else 'http'}://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
    )
    async with server:
        yield seen


def ok(body: bytes = b"ok", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def rst(writer: asyncio.StreamWriter) -> None:
    """Abort with a TCP RST, as a crashed server would."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.fixture
async def raw() -> AsyncIterator[RawTransport]:
    transport = RawTransport()
    transport.open()
    yield transport
    await transport.aclose()


async def test_post_to_the_fake_upstream(raw: RawTransport) -> None:
    async with FakeUpstream(text="hello there") as up:
        response = await raw.post(
            HttpRequest(up.url + "/chat/completions", BODY, {"content-type": "application/json"})
        )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert orjson.loads(response.body)["choices"][0]["message"]["content"].startswith("hello")


async def test_keep_alive_reuses_one_connection(raw: RawTransport) -> None:
    async def answer(writer: asyncio.StreamWriter, n: int, _: int) -> bool:
        writer.write(ok(f"answer {n}".encode()))
        return True

    async with raw_server(answer) as seen:
        bodies = [(await raw.post(HttpRequest(seen.url, BODY))).body for _ in range(5)]
        await raw.aclose()
    assert bodies == [f"answer {n}".encode() for n in range(1, 6)]
    assert seen.connections == 1 and seen.requests == 5


async def test_chunked_response_is_decoded(raw: RawTransport) -> None:
    async def answer(writer: asyncio.StreamWriter, n: int, _: int) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        return True

    async with raw_server(answer) as seen:
        first = await raw.post(HttpRequest(seen.url, BODY))
        second = await raw.post(HttpRequest(seen.url, BODY))
        await raw.aclose()
    assert first.body == second.body == b"hello world"
    assert seen.connections == 1


async def test_close_delimited_response_reads_to_eof_and_is_not_reused(raw: RawTransport) -> None:
    async def answer(writer: asyncio.StreamWriter, n: int, _: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end " + str(n).encode())
        return False

    async with raw_server(answer) as seen:
        first = await raw.post(HttpRequest(seen.url, BODY))
        second = await raw.post(HttpRequest(seen.url, BODY))
    assert (first.body, second.body) == (b"until the end 1", b"until the end 2")
    assert seen.connections == 2


async def test_stream_yields_chunks_as_they_arrive(raw: RawTransport) -> None:
    received_first = asyncio.Event()

    async def answer(writer: asyncio.StreamWriter, n: int, _: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst \r\n")
        await writer.drain()
        await received_first.wait()  # the rest only once the client has seen the first piece
        writer.write(b"4\r\nlast\r\n0\r\n\r\n")
        return True

    async with raw_server(answer) as seen:
        stream = await raw.open_stream(HttpRequest(seen.url, STREAM_BODY))
        pieces = []
        async with asyncio.timeout(5):
            async for chunk in stream.chunks():
                pieces.append(chunk)
                received_first.set()
        await stream.aclose()
        await raw.post(HttpRequest(seen.url, BODY))  # the drained stream's connection is reused
        await raw.aclose()
    assert pieces == [b"first ", b"last"]
    assert seen.connections == 1


async def test_many_sse_chunks_from_the_fake_upstream(raw: RawTransport) -> None:
    client = HttpClient(raw)
    async with FakeUpstream(chunks=60, chunk_delay_ms=1) as up:
        request = HttpRequest(up.url + "/chat/completions", STREAM_BODY)
        events = [event.data async for event in client.events(request, Trace())]
    assert events[-1] == "[DONE]" and len(events) > 60
    assert all(orjson.loads(data)["object"] == "chat.completion.chunk" for data in events[:-1])


async def test_large_body_survives_flow_control(raw: RawTransport) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, above the buffer that pauses reading

    async def answer(writer: asyncio.StreamWriter, n: int, _: int) -> bool:
        writer.write(ok(big))
        return True

    async with raw_server(answer) as seen:
        stream = await raw.open_stream(HttpRequest(seen.url, BODY))
        received = bytearray()
        async for chunk in stream.chunks():
            received += chunk
            await asyncio.sleep(0.001)  # a slow reader
        await stream.aclose()
        await raw.aclose()
    assert bytes(received) == big


@pytest.mark.parametrize("read_first", [True, False])
async def test_abandoned_stream_closes_its_connection(raw: RawTransport, read_first: bool) -> None:
    async def answer(writer: asyncio.StreamWriter, n: int, _: int) -> bool:
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        else:
            writer.write(ok())
        return True

    async with raw_server(answer) as seen:
        stream = await raw.open_stream(HttpRequest(seen.url, STREAM_BODY))
        chunks = stream.chunks()
        if read_first:
            assert await anext(chunks) == b"only part"
        await chunks.aclose()
        await stream.aclose()
        assert (await raw.post(HttpRequest(seen.url, BODY))).body == b"ok"
        await raw.aclose()
    assert seen.connections == 2


async def test_reset_mid_body_is_a_connection_error(raw: RawTransport) -> None:
    async def answer(writer: asyncio.StreamWriter, n: int, _: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(0.01)
        rst(writer)
        return False

    async with raw_server(answer) as seen:
        with pytest.raises(ConnectionError):
            await raw.post(HttpRequest(seen.url, BODY))
        with pytest.raises(UpstreamConnectionError):
            await HttpClient(raw).post_json(HttpRequest(seen.url, BODY), Trace())
    assert seen.requests == 2  # never re-sent once an answer had begun


async def test_stream_dropped_by_the_fake_upstream_is_an_upstream_connection_error(raw: RawTransport) -> None:
    client = HttpClient(raw)
    async with FakeUpstream(chunks=20, drop_after_chunks=3) as up:
        request = HttpRequest(up.url + "/chat/completions", STREAM_BODY)
        with pytest.raises(UpstreamConnectionError):
            [event async for event in client.events(request, Trace())]


async def test_stale_pooled_connection_is_retried_on_a_fresh_one(raw: RawTransport) -> None:
    async def answer(writer: asyncio.StreamWriter, n: int, on_this: int) -> bool:
        if on_this == 2:  # the server dropped the idle connection just as the request came
            return False
        writer.write(ok(f"answer {n}".encode()))
        return True

    async with raw_server(answer) as seen:
        first = await raw.post(HttpRequest(seen.url, BODY))
        second = await raw.post(HttpRequest(seen.url, BODY))
        await raw.aclose()
    assert (first.body, second.body) == (b"answer 1", b"answer 3")
    assert seen.connections == 2 and seen.requests == 3


async def test_reused_connection_failing_after_a_response_byte_is_not_retried(raw: RawTransport) -> None:
    async def answer(writer: asyncio.StreamWriter, n: int, on_this: int) -> bool:
        if on_this == 2:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
            return False
        writer.write(ok())
        return True

    async with raw_server(answer) as seen:
        await raw.post(HttpRequest(seen.url, BODY))
        with pytest.raises(ConnectionError):
            await raw.post(HttpRequest(seen.url, BODY))
    assert seen.requests == 2


async def test_refused_connection_is_a_connection_error(raw: RawTransport) -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionError):
        await raw.post(HttpRequest(f"http://127.0.0.1:{port}/v1/chat/completions", BODY))


async def test_error_statuses_are_returned_with_their_bodies(raw: RawTransport) -> None:
    async with FakeUpstream(error_rate=1.0, error_status=503) as up:
        response = await raw.post(HttpRequest(up.url + "/chat/completions", BODY))
        assert response.status == 503
        assert orjson.loads(response.body)["error"]["message"] == "fake upstream error 503"
        bad = await raw.post(HttpRequest(up.url + "/chat/completions", b"not json"))
        assert bad.status == 400


@pytest.mark.parametrize("make", [AiohttpTransport, RawTransport], ids=["aiohttp", "raw"])
async def test_openai_backend_over_either_transport(make: Callable[[], Transport]) -> None:
    async with FakeUpstream(text="pong", chunks=4) as up:
        backend = OpenAIBackend(deployment(api_base=up.url, model="m1"), make())
        await backend.start()
        try:
            response = await backend.complete(chat("ping"))
            assert response.text.startswith("pong") and response.usage.total_tokens > 0
            chunks = [parsed(c) async for c in backend.stream(chat("ping"))]
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
            assert text.startswith("pong") and chunks[-1]["usage"]["completion_tokens"] > 0
            up.configure(burst_429=1, retry_after=2)
            with pytest.raises(RateLimited) as caught:
                await backend.complete(chat("ping"))
            assert caught.value.retry_after == 2.0
        finally:
            await backend.aclose()


async def test_idle_connection_that_hears_data_is_dropped(raw: RawTransport) -> None:
    async def answer(writer: asyncio.StreamWriter, n: int, on_this: int) -> bool:
        writer.write(ok())
        if on_this == 1:  # then an unsolicited answer, as servers send 408 before closing an idle socket
            await writer.drain()
            writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
        return True

    async with raw_server(answer) as seen:
        first = await raw.post(HttpRequest(seen.url, BODY))
        await asyncio.sleep(0.05)
        second = await raw.post(HttpRequest(seen.url, BODY))
        await raw.aclose()
    assert first.status == second.status == 200
    assert seen.connections == 2


async def test_header_values_cannot_smuggle_lines(raw: RawTransport) -> None:
    with pytest.raises(ValueError, match="line breaks"):
        await raw.post(HttpRequest("http://127.0.0.1:9/v1", BODY, {"x-key": "a\r\nHost: evil"}))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_https_with_a_trusted_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)

    async def answer(writer: asyncio.StreamWriter, n: int, _: int) -> bool:
        writer.write(ok(b"secret"))
        return True

    async with raw_server(answer, tls=server_tls) as seen:
        trusting = RawTransport(ssl_context=ssl.create_default_context(cafile=str(cert)))
        trusting.open()
        bodies = [(await trusting.post(HttpRequest(seen.url, BODY))).body for _ in range(2)]
        await trusting.aclose()
        with pytest.raises(ssl.SSLCertVerificationError):  # the default context does not trust it
            await RawTransport().post(HttpRequest(seen.url, BODY))
    assert bodies == [b"secret", b"secret"] and seen.connections <= 2


def test_under_uvloop_as_thrifty_serve_runs() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> tuple[list[int], list[str], int]:
        transport = RawTransport()
        transport.open()
        async with FakeUpstream(chunks=30) as up:
            url = up.url + "/chat/completions"
            statuses = [(await transport.post(HttpRequest(url, BODY))).status for _ in range(3)]
            events = [
                e.data async for e in HttpClient(transport).events(HttpRequest(url, STREAM_BODY), Trace())
            ]
            pooled = sum(len(pool) for pools in transport._pools.values() for pool in pools.values())
            await transport.aclose()
        return statuses, events, pooled

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        statuses, events, pooled = runner.run(scenario())
    assert statuses == [200, 200, 200] and events[-1] == "[DONE]" and len(events) > 30
    assert pooled == 1  # one keep-alive connection served all four exchanges
