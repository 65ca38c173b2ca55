"""OpenAI's Batch file format: request lines in, result lines out.

Input, one JSON object a line::

    {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [...]}}

Output (successes) and errors, one JSON object a line::

    {"id": "batch_req_...", "custom_id": "q1",
     "response": {"status_code": 200, "request_id": "...", "body": {...}}, "error": null}

A malformed line does not stop the batch: it becomes an error line naming its
line number. A repeated ``custom_id`` or a batch over the size limit refuses
the whole batch before anything runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import InvalidRequest, ThriftyError
from ..types import PARAMS, ChatRequest

CHAT_URLS = ("/v1/chat/completions", "/chat/completions")


@dataclass(frozen=True)
class BatchLine:
    """One valid request of a batch."""

    line: int  # 1-based line number in the input file
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class BadLine:
    """A line that cannot run, reported in the error file."""

    line: int
    custom_id: str | None
    code: str
    message: str

    def record(self) -> dict[str, Any]:
        """The error-file line for it, in the shape of a failed batch request."""
        return {
            "id": "batch_req_" + uuid.uuid4().hex[:24],
            "custom_id": self.custom_id,
            "response": None,
            "error": {"code": self.code, "message": self.message, "line": self.line},
        }


@dataclass(frozen=True)
class ParsedBatch:
    requests: list[BatchLine]
    bad: list[BadLine]


def parse_batch(
    lines: Iterable[bytes | str], *, max_requests: int, limit_name: str = "max_requests"
) -> ParsedBatch:
    """Check every line; raise InvalidRequest for duplicates or an oversized batch."""
    requests: list[BatchLine] = []
    bad: list[BadLine] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        item = _parse_line(number, text)
        if isinstance(item, BadLine):
            bad.append(item)
            continue
        first = seen.get(item.custom_id)
        if first is not None:
            raise InvalidRequest(
                f"duplicate custom_id {item.custom_id!r} on lines {first} and {number}; "
                "each request in a batch needs its own custom_id",
                param="custom_id",
                code="duplicate_custom_id",
            )
        seen[item.custom_id] = number
        requests.append(item)
        if len(requests) > max_requests:
            raise InvalidRequest(
                f"the batch has more than {max_requests} requests, the limit ({limit_name} = {max_requests})",
                param="input_file_id",
                code="batch_too_large",
            )
    return ParsedBatch(requests, bad)


def _parse_line(number: int, text: bytes | str) -> BatchLine | BadLine:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return BadLine(number, None, "invalid_json", f"line {number}: not valid JSON ({exc})")
    if not isinstance(data, dict):
        return BadLine(number, None, "invalid_request", f"line {number}: must be a JSON object")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return BadLine(
            number, None, "missing_custom_id", f"line {number}: 'custom_id' must be a non-empty string"
        )

    def bad(code: str, problem: str) -> BadLine:
        return BadLine(number, custom_id, code, f"line {number}: {problem}")

    method = data.get("method", "POST")
    if not isinstance(method, str) or method.upper() != "POST":
        return bad("invalid_method", f"'method' must be POST, got {method!r}")
    url = data.get("url")
    if url not in CHAT_URLS:
        return bad("invalid_url", f"'url' must be /v1/chat/completions, got {url!r}")
    body = data.get("body")
    if not isinstance(body, dict):
        return bad("invalid_body", "'body' must be a JSON object")
    try:
        to_chat_request(body)
    except InvalidRequest as exc:
        return bad("invalid_body", exc.message)
    return BatchLine(number, custom_id, body)


def to_chat_request(body: dict[str, Any]) -> ChatRequest:
    """A chat-completions body as a :class:`ChatRequest` (never streamed)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'body.model' must be a non-empty string", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequest("'body.messages' must be a non-empty list of message objects", param="messages")
    if body.get("stream"):
        raise InvalidRequest("'body.stream' is not supported in a batch", param="stream")
    skip = {"model", "messages", "stream", "stream_options"}
    params = {k: v for k, v in body.items() if k in PARAMS}
    extra = {k: v for k, v in body.items() if k not in PARAMS and k not in skip}
    return ChatRequest(model=model, messages=messages, params=params, extra=extra)


def success_record(custom_id: str, request_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "batch_req_" + uuid.uuid4().hex[:24],
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": None,
    }


def failure_record(custom_id: str, request_id: str, error: BaseException) -> dict[str, Any]:
    """A request that ran and failed: the error as the server would have answered it."""
    if not isinstance(error, ThriftyError):
        error = ThriftyError(f"{type(error).__name__}: {error}")
    return {
        "id": "batch_req_" + uuid.uuid4().hex[:24],
        "custom_id": custom_id,
        "response": {"status_code": error.status, "request_id": request_id, "body": error.to_json()},
        "error": {"code": error.code or error.type, "message": error.message},
    }


def dumps(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"
