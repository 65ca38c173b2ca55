from __future__ import annotations

from thrifty.providers.sse import SseEvent, SseParser


def test_events_split_across_chunks_are_reassembled() -> None:
    parser = SseParser()
    body = b'event: message_start\ndata: {"a": 1}\n\ndata: [DONE]\n\n'
    events = []
    for i in range(len(body)):
        events += parser.feed(body[i : i + 1])
    assert events == [SseEvent('{"a": 1}', "message_start"), SseEvent("[DONE]")]


def test_crlf_comments_and_multiline_data() -> None:
    parser = SseParser()
    events = parser.feed(b": keep-alive\r\ndata: one\r\ndata: two\r\n\r\n")
    assert events == [SseEvent("one\ntwo")]


def test_flush_returns_an_event_missing_its_blank_line() -> None:
    parser = SseParser()
    assert parser.feed(b"data: last") == []
    assert parser.flush() == [SseEvent("last")]
