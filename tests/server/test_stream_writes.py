"""The SSE writer: pieces ready at once share a write; nothing ready waits for the upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

from thrifty.server.app import _EventStream


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):  # loop turns, not time: the writer needs a few
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the writer never got there")


async def test_ready_pieces_share_one_write_sent_before_the_stream_waits() -> None:
    release = asyncio.Event()
    sent: list[dict[str, Any]] = []
    seen_before_release: list[list[dict[str, Any]]] = []

    async def pieces() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"  # same upstream read: no wait in between
        seen_before_release.append(list(sent))
        await release.wait()  # the upstream is slow now
        yield b"data: 3\n\n"

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client stays
        return {"type": "http.disconnect"}

    response = _EventStream(pieces(), media_type="text/event-stream")
    task = asyncio.ensure_future(response({"type": "http"}, receive, send))
    await _until(lambda: len(sent) >= 2)
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\ndata: 2\n\n"]  # out while the stream waits
    assert not task.done()
    release.set()
    await task
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\ndata: 2\n\n", b"data: 3\n\n", b""]
    assert sent[-1]["more_body"] is False
    assert seen_before_release == [[sent[0]]]  # two pieces ready at once: not written one by one


async def test_a_client_that_leaves_while_the_stream_waits_closes_it() -> None:
    closed = asyncio.Event()
    sent: list[dict[str, Any]] = []
    left = asyncio.Event()

    async def pieces() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            await asyncio.sleep(600)
            yield b"never"
        finally:
            closed.set()

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    response = _EventStream(pieces(), media_type="text/event-stream")
    task = asyncio.ensure_future(response({"type": "http"}, receive, send))
    await _until(lambda: len(sent) >= 2)
    left.set()  # the watch notices within its 50 ms start delay
    await asyncio.wait_for(task, 30)
    assert closed.is_set()
    assert b"never" not in b"".join(m.get("body", b"") for m in sent)
