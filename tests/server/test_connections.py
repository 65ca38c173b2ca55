"""The connection layer over real sockets: a running `thrifty serve` in front of a fake upstream.

Two gateways: one with short timeouts (header and keep-alive), one with long timeouts and a
small connection cap, so that a closed socket there can only mean eviction.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.processes import free_port as _port
from tests.processes import stop as _stop
from tests.processes import wait_ready as _wait

TIMEOUT = 0.5  # header_timeout and keepalive_timeout of the short-timeout gateway
CAP = 8  # max_connections of the capped gateway
CHAT = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "thrifty.fakeupstream", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/health", proc)
        yield port
    finally:
        _stop(proc)


@dataclass
class Gateway:
    port: int
    header_timeout: float
    keepalive_timeout: float


def _gateway(tmp: Path, upstream: int, server: str) -> Iterator[Gateway]:
    port = _port()
    cfg = tmp / "thrifty.yaml"
    cfg.write_text(
        f"""
server: {{data_dir: {tmp}, {server}}}
model_list:
  - model_name: fake
    litellm_params: {{model: openai/m, api_base: "http://127.0.0.1:{upstream}/v1", api_key: sk-up}}
"""
    )
    thrifty = str(Path(sys.executable).parent / "thrifty")
    proc = subprocess.Popen(
        [thrifty, "serve", "--config", str(cfg), "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/ready", proc)
        from thrifty.config import load_config

        s = load_config(cfg).server
        yield Gateway(port, s.header_timeout, s.keepalive_timeout)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, upstream: int) -> Iterator[Gateway]:
    """Short header and keep-alive timeouts; default header limits."""
    server = f"header_timeout: {TIMEOUT}, keepalive_timeout: {TIMEOUT}"
    yield from _gateway(tmp_path_factory.mktemp("quick"), upstream, server)


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, upstream: int) -> Iterator[Gateway]:
    """A small connection cap; timeouts long enough that only eviction closes a connection."""
    server = f"max_connections: {CAP}, header_timeout: 120, keepalive_timeout: 120"
    yield from _gateway(tmp_path_factory.mktemp("capped"), upstream, server)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a content-length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes ``sock`` within ``seconds`` (EOF or reset)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if readable:
            try:
                if sock.recv(65536) == b"":
                    return True
            except ConnectionError:
                return True
    return False


CHAT_REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(CHAT)).encode() + b"\r\n\r\n" + CHAT
)


def _assert_431(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 431
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "request_header_fields_too_large"
    assert error["param"] is None
    assert "header" in error["message"]


def test_a_100_kb_header_is_refused_with_431_json(quick: Gateway) -> None:
    with _connect(quick.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n")
        _assert_431(*_read_response(sock))


def test_a_header_that_never_ends_is_refused_before_it_is_complete(quick: Gateway) -> None:
    with _connect(quick.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 100_000)
        _assert_431(*_read_response(sock))


def test_a_thousand_headers_are_refused_with_431_json(quick: Gateway) -> None:
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(1000))
    with _connect(quick.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: t\r\n" + many + b"\r\n")
        _assert_431(*_read_response(sock))


def test_headers_within_the_limits_are_served(quick: Gateway) -> None:
    some = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 500) for i in range(90))
    with _connect(quick.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: t\r\n" + some + b"\r\n")
        status, _, _ = _read_response(sock)
    assert status == 200


def test_malformed_http_gets_a_json_400(quick: Gateway) -> None:
    with _connect(quick.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nbad header line\r\n\r\n")
        status, headers, body = _read_response(sock)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_a_silent_connection_is_closed_after_the_header_timeout(quick: Gateway) -> None:
    with _connect(quick.port) as sock:
        assert _closed_within(sock, 20 * quick.header_timeout)


def test_a_slowloris_client_is_closed_after_the_header_timeout(quick: Gateway) -> None:
    """Headers dribbled a few bytes at a time, each well within the timeout, never finish."""
    with _connect(quick.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: t\r\n")
        deadline = time.monotonic() + 20 * quick.header_timeout
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b"x-a: b\r\n")
            except OSError:
                closed = True
                break
            closed = _closed_within(sock, quick.header_timeout / 5)
        assert closed


def test_a_slowloris_after_a_first_request_is_closed_too(quick: Gateway) -> None:
    """On a keep-alive connection the next request's headers are bounded the same way."""
    with _connect(quick.port) as sock:
        sock.sendall(CHAT_REQUEST)
        assert _read_response(sock)[0] == 200
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        deadline = time.monotonic() + 20 * (quick.header_timeout + quick.keepalive_timeout)
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b"x-a: b\r\n")
            except OSError:
                closed = True
                break
            closed = _closed_within(sock, quick.header_timeout / 5)
        assert closed


def test_a_body_that_stops_arriving_is_closed_after_the_header_timeout(quick: Gateway) -> None:
    """Slow POST: headers complete, then the body stalls; the connection does not stay busy."""
    with _connect(quick.port) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
            b'content-length: 1000\r\n\r\n{"model": '
        )
        assert _closed_within(sock, 20 * quick.header_timeout)


def test_a_body_sent_slowly_but_steadily_is_served(quick: Gateway) -> None:
    """Pauses shorter than the timeout between pieces of the body: the request goes through."""
    head, body = CHAT_REQUEST.split(b"\r\n\r\n", 1)
    step = len(body) // 12 + 1  # 12 pieces, 1/5 of the timeout apart: 2.4 timeouts in all
    with _connect(quick.port) as sock:
        sock.sendall(head + b"\r\n\r\n")
        for i in range(0, len(body), step):
            time.sleep(quick.header_timeout / 5)
            sock.sendall(body[i : i + step])
        status, _, _ = _read_response(sock)
    assert status == 200


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(quick: Gateway) -> None:
    with _connect(quick.port) as sock:
        sock.sendall(CHAT_REQUEST)
        status, _, _ = _read_response(sock)
        assert status == 200
        assert _closed_within(sock, 20 * quick.keepalive_timeout)


def test_a_keep_alive_connection_serves_several_requests(quick: Gateway) -> None:
    with _connect(quick.port) as sock:
        for _ in range(3):
            sock.sendall(CHAT_REQUEST)
            status, _, body = _read_response(sock)
            assert status == 200
            assert json.loads(body)["choices"][0]["message"]["content"]


def test_idle_connections_are_evicted_oldest_first_and_a_real_request_is_answered(capped: Gateway) -> None:
    idle = [_connect(capped.port) for _ in range(3 * CAP)]
    try:
        # the kernel's accept queue is first-in first-out, so `real` is admitted after them all
        with _connect(capped.port) as real:
            real.sendall(CHAT_REQUEST)
            status, _, body = _read_response(real)
        assert status == 200
        assert json.loads(body)["choices"][0]["message"]["content"]
        # The oldest 2*CAP + 1 had to make room; timeouts are 120 s, so only eviction closed them.
        assert all(_closed_within(sock, 30) for sock in idle[: 2 * CAP])
    finally:
        for sock in idle:
            sock.close()


def test_when_every_connection_is_busy_the_newcomer_gets_503_json(capped: Gateway) -> None:
    """Busy = headers in, answer pending: here a body the client has not sent yet. The
    server's "100 Continue" proves it read the headers and the request is in flight."""
    busy = []
    try:
        for _ in range(CAP):
            sock = _connect(capped.port)
            busy.append(sock)
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
                b"expect: 100-continue\r\ncontent-length: 1000\r\n\r\n"
            )
            status, _, _ = _read_response(sock)
            assert status == 100
        with _connect(capped.port) as newcomer:
            newcomer.sendall(CHAT_REQUEST)
            status, headers, body = _read_response(newcomer)
        assert status == 503
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "too_many_connections"
    finally:
        for sock in busy:
            sock.close()
    # room again once the busy ones leave
    deadline = time.monotonic() + 30
    while True:
        with _connect(capped.port) as sock:
            sock.sendall(CHAT_REQUEST)
            status, _, _ = _read_response(sock)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200
