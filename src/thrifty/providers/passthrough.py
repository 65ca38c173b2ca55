"""An OpenAI-style SSE body forwarded as bytes: cut at event ends, scanned, rarely parsed.

:class:`Passthrough` is the streaming path of an OpenAI-compatible upstream
when no layer needs the chunks as objects (``ChatRequest.raw_stream``). Each
read from the wire is cut after its last complete event (what is left waits
for the next read), and the block of whole events is handed on as
:class:`~thrifty.types.RawEvents` after a few byte scans:

- each chunk's id is made the request's, by replacing the exact ``"id":"..."``
  token the upstream used (learnt from its first event), so a client sees the
  same ids as on the parsed path;
- a block holding anything else than plain content events (a usage object, an
  ``"error"`` key, ``"choices": []``, ``[DONE]``, a line that is not ``data:``)
  is taken event by event, and only those events are parsed, exactly as the
  parsed path would: the usage is kept for the ledger (and the usage-only event
  dropped: the stream ends with thrifty's own usage chunk), an error raises,
  ``[DONE]`` ends the stream;
- generated characters and a ``finish_reason`` are counted by regular
  expression, for the usage of a stream cut short and to tell a finished
  stream from a dropped one.

The scans cannot be fooled by a model's text: inside a JSON string a quote
is ``\\"`` and a line break ``\\n``, so ``"usage":{`` or a line starting with
``data: [DONE]`` only match the JSON and the framing themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import UpstreamError
from ..types import Chunk, RawEvents, Usage

# One parsed event: the chunk to forward (None if it has none) and any usage (openai.parse_chunk).
ParseChunk = Callable[[Any], tuple[Chunk | None, Usage | None]]

_DONE = b"[DONE]"
_MARKERS = (b"[DONE]", b'"error"', b'"choices":[]', b'"choices": []')
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_CONTENT = re.compile(rb'"content"\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)"')
_TOOL_TEXT = re.compile(rb'"(?:name|arguments)"\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)"')


def plain(block: bytes) -> bool:
    """Whether a block holds only one-line ``data:`` events with no usage object, no
    error, no empty ``choices`` and no ``[DONE]``: what is forwarded unparsed."""
    return framed(block) and plain_until(block) == len(block)


def framed(block: bytes) -> bool:
    """Whether a block is one-line ``data:`` events, each followed by one blank line."""
    return block.startswith(b"data:") and block.count(b"\n") == 2 * block.count(b"\n\ndata:") + 2


def plain_until(block: bytes) -> int:
    """Where the first event that needs parsing starts in a framed block (its length if none).

    Literal searches (compact JSON, and JSON with a space after the colon); a usage object
    in other spacing is still found by expression.
    """
    cut = len(block)
    for marker in _MARKERS:
        found = block.find(marker, 0, cut)
        if found >= 0:
            cut = found
    if b'"usage"' in block:
        usage = _USAGE.search(block, 0, cut)
        if usage is not None:
            cut = usage.start()
    if cut == len(block):
        return cut
    start = block.rfind(b"\n\n", 0, cut)
    return 0 if start < 0 else start + 2


def finishes(block: bytes) -> bool:
    """Whether a block holds a ``finish_reason`` that is not null."""
    return b'"finish_reason":"' in block or b'"finish_reason": "' in block


def text_chars(block: bytes) -> int:
    """Characters of generated text (content, tool names and arguments) in a block, about:
    an escape counts as its written length."""
    chars = sum(map(len, _CONTENT.findall(block)))
    if b'"tool_calls"' in block:
        chars += sum(map(len, _TOOL_TEXT.findall(block)))
    return chars


class Passthrough:
    """The state of one stream forwarded as bytes: feed reads, then :meth:`flush`."""

    __slots__ = ("_tail", "_id_from", "_id_to", "_request_id", "_parse", "usage", "model", "done", "finished")

    def __init__(self, request_id: str, parse: ParseChunk) -> None:
        self._tail = b""
        self._id_from: bytes | None = None  # the upstream's id token, once known
        self._request_id = request_id
        self._id_to = b'"id":' + orjson.dumps(request_id)
        self._parse = parse
        self.usage: Usage | None = None
        self.model = ""
        self.done = False  # [DONE] seen: nothing more is forwarded
        self.finished = False  # a finish_reason seen

    def feed(self, piece: bytes) -> RawEvents | None:
        """The complete events of what has arrived so far, ready to forward (None: none yet)."""
        if self.done:
            return None
        buffer = self._tail + piece if self._tail else piece
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            self._tail = buffer
            return None
        cut += 2
        if cut == len(buffer):
            block, self._tail = buffer, b""
        else:
            block, self._tail = buffer[:cut], buffer[cut:]
        return self._block(block)

    def flush(self) -> RawEvents | None:
        """The last event, when the body ended without a blank line after it."""
        tail, self._tail = self._tail, b""
        if self.done or not tail.strip():
            return None
        return self._block(tail.rstrip(b"\n") + b"\n\n")

    def _block(self, block: bytes) -> RawEvents | None:
        """What to forward of a block of whole events: its plain events as they are (ids
        replaced), then the rest event by event."""
        parts: list[bytes] = []
        if self._id_from is None:  # the first event teaches the upstream's id token
            end = block.find(b"\n\n") + 2
            self._events(block[:end], parts)
            block = block[end:]
        if block and not self.done and self._id_from is not None and framed(block):
            cut = plain_until(block)
            if cut:
                parts.append(block[:cut].replace(self._id_from, self._id_to))
                block = block[cut:]
        if block and not self.done:
            self._events(block, parts)
        if not parts:
            return None
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if finishes(data):
            self.finished = True
        return RawEvents(data, text_chars(data))

    def _events(self, block: bytes, parts: list[bytes]) -> None:
        """The slow path: event by event, parsing those that carry more than content."""
        for event in block.split(b"\n\n"):
            if not event:
                continue
            payload = _payload(event)
            if payload is None:
                continue  # a comment or a keep-alive: nothing for the client
            if payload == _DONE:
                self.done = True
                return
            line = self._event(payload)
            if line is not None:
                parts.append(line)

    def _event(self, payload: bytes) -> bytes | None:
        """One event's line to forward (None: nothing to forward)."""
        if self._id_from is not None and plain(b"data:" + payload + b"\n\n"):
            return b"data: " + payload.replace(self._id_from, self._id_to) + b"\n\n"
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("the upstream sent a stream chunk that is not JSON") from exc
        had_usage = isinstance(data, dict) and data.get("usage") is not None
        chunk, usage = self._parse(data)
        if usage is not None:
            self.usage = usage
        if chunk is None:
            return None
        if not self.model:
            self.model = str(chunk.get("model") or "")
        if self._id_from is None:
            self._id_from = _id_token(payload, chunk.get("id"))
        if had_usage or self._id_from is None:  # rebuilt as the parsed path sends it
            chunk["id"] = self._request_id
            return b"data: " + orjson.dumps(chunk) + b"\n\n"
        return b"data: " + payload.replace(self._id_from, self._id_to) + b"\n\n"


def _payload(event: bytes) -> bytes | None:
    """The ``data`` of one event (its lines joined), or None when it has none."""
    if event.startswith(b"data:") and b"\n" not in event:
        return event[6:] if event[5:6] == b" " else event[5:]
    lines = [
        line[6:] if line[5:6] == b" " else line[5:]
        for line in event.split(b"\n")
        if line.startswith(b"data:")
    ]
    return b"\n".join(lines) if lines else None


def _id_token(payload: bytes, upstream_id: object) -> bytes | None:
    """The exact bytes of ``"id": "<upstream id>"`` in an event, to replace in the rest."""
    if not isinstance(upstream_id, str) or not upstream_id:
        return None
    value = orjson.dumps(upstream_id)
    for token in (b'"id":' + value, b'"id": ' + value):
        if token in payload:
            return token
    return None
