from __future__ import annotations

from thrifty.providers.sse import SseDataParser, SseEvent, SseParser


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


def test_data_parser_reassembles_payloads_split_anywhere() -> None:
    body = b'event: x\ndata: {"a": 1}\n\n: ping\r\ndata: one\r\ndata:two\r\n\r\nid: 3\ndata: [DONE]\n\n'
    for size in (1, 2, 5, len(body)):
        parser = SseDataParser()
        payloads: list[bytes] = []
        for i in range(0, len(body), size):
            payloads += parser.feed(body[i : i + size])
        assert payloads == [b'{"a": 1}', b"one\ntwo", b"[DONE]"]
        assert parser.flush() == []


def test_data_parser_flush_returns_a_payload_missing_its_blank_line() -> None:
    parser = SseDataParser()
    assert parser.feed(b"data: last") == []
    assert parser.flush() == [b"last"]
    parser = SseDataParser()
    assert parser.feed(b"data: almost\n") == []
    assert parser.flush() == [b"almost"]
