"""Server-sent events: bytes off the wire in, ``(event, data)`` pairs out.

The parser is incremental and does no I/O: feed it chunks as they arrive
(they may split lines anywhere) and it returns the events completed so far.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SseEvent:
    data: str
    event: str = "message"


class SseParser:
    """Incremental SSE decoder: ``feed()`` chunks, then ``flush()`` at the end."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buffer += chunk
        if b"\n" not in self._buffer:
            return []
        *lines, self._buffer = self._buffer.split(b"\n")
        events: list[SseEvent] = []
        for raw in lines:
            event = self._line(raw.rstrip(b"\r").decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SseEvent]:
        """Events still pending when the stream ends without a final blank line."""
        events = self.feed(b"\n") if self._buffer else []
        last = self._line("")
        return events + ([last] if last is not None else [])

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(data="\n".join(self._data), event=self._event or "message")
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            return None  # a comment, e.g. a keep-alive
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None


class SseDataParser:
    """Incremental SSE decoder for unnamed events: ``data`` payloads as bytes, nothing else.

    What an OpenAI-style stream needs, without decoding text or building event
    objects: event names, ids and comments are skipped.
    """

    __slots__ = ("_buffer", "_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\n" not in buffer:
            self._buffer = buffer
            return []
        *lines, self._buffer = buffer.split(b"\n")
        payloads: list[bytes] = []
        data = self._data
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    payloads.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data = self._data = []
            elif line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
        return payloads

    def flush(self) -> list[bytes]:
        """The payloads still pending when the stream ends without a final blank line."""
        payloads = self.feed(b"\n") if self._buffer else []
        if self._data:  # the last event had no blank line after it
            payloads += self.feed(b"\n")
        return payloads
