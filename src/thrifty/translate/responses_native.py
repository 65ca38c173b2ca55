"""The Responses API passed to an upstream that speaks it (``options.responses: native``).

Pure functions, both ways. :func:`upstream_body` is the client's body as the
upstream gets it: thrifty keeps the conversation (``previous_response_id`` is
resolved here, into the items it stands for) and the stored copy, so the
upstream is asked not to store. :func:`chat_completion` and :class:`EventChunks`
turn the upstream's answer (a ``response`` object, or its stream of events) into
the chat completion or chunks every layer of the gateway reads: usage for the
ledger and budgets, the text for the cache. The ``response`` object itself goes
back to the client as the upstream made it, under thrifty's id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import UpstreamError
from ..types import Chunk, Usage, usage_chunk

# Fields thrifty answers itself and never sends upstream.
_OURS = ("previous_response_id", "store", "stream", "stream_options", "thrifty")


def upstream_body(body: Mapping[str, Any], earlier: list[dict[str, Any]]) -> dict[str, Any]:
    """The client's Responses body for the upstream: the earlier items in ``input``, not stored there."""
    out = {k: v for k, v in body.items() if k not in _OURS}
    if earlier:
        given = body["input"]
        now = [{"role": "user", "content": given}] if isinstance(given, str) else list(given)
        out["input"] = [_bare(item) for item in earlier] + now
    out["store"] = False
    return out


def _bare(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item as input: ids thrifty gave (or the upstream gave unstored) would name nothing there."""
    return {k: v for k, v in item.items() if k not in ("id", "status")}


def usage(data: Any) -> Usage:
    """Responses usage (``input_tokens``, ``output_tokens``) as thrifty's."""
    if not isinstance(data, dict):
        return Usage()
    details = data.get("input_tokens_details") or {}
    return Usage(
        prompt_tokens=int(data.get("input_tokens") or 0),
        completion_tokens=int(data.get("output_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
    )


def chat_completion(response: Any) -> tuple[dict[str, Any], Usage]:
    """A ``response`` object as the chat completion the gateway's layers read, and its usage."""
    if not isinstance(response, dict) or not isinstance(response.get("output"), list):
        raise UpstreamError("the upstream's answer is not a Responses API response")
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response["output"]:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            text.extend(
                str(p.get("text") or "") for p in item.get("content") or () if p.get("type") == "output_text"
            )
        elif item.get("type") == "function_call":
            function = {"name": str(item.get("name") or ""), "arguments": str(item.get("arguments") or "")}
            calls.append({"id": str(item.get("call_id") or ""), "type": "function", "function": function})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    reason = (response.get("incomplete_details") or {}).get("reason")
    finish = "length" if reason == "max_output_tokens" else "tool_calls" if calls else "stop"
    used = usage(response.get("usage"))
    completion = {
        "id": str(response.get("id") or ""),
        "object": "chat.completion",
        "created": int(response.get("created_at") or 0),
        "model": str(response.get("model") or ""),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": used.to_json(),
    }
    return completion, used


class EventChunks:
    """An upstream's Responses stream events in, chat chunks out (text, tool calls, usage).

    :meth:`feed` takes each event's JSON; the last chunk is the usage chunk, on
    ``response.completed`` or ``response.incomplete``. :attr:`done` says whether it came.
    """

    def __init__(self, request_id: str, model: str) -> None:
        self.id = request_id
        self.model = model
        self.done = False
        self._calls: dict[int, int] = {}  # output_index -> tool call index

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def feed(self, event: Any) -> list[Chunk]:
        if not isinstance(event, dict):
            raise UpstreamError("the upstream sent a stream event that is not an object")
        kind = event.get("type")
        if kind == "response.output_text.delta":
            return [self._chunk({"content": str(event.get("delta") or "")})]
        if kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") != "function_call":
                return []
            index = self._calls[int(event.get("output_index") or 0)] = len(self._calls)
            call = {"index": index, "id": item.get("call_id"), "type": "function"}
            call["function"] = {"name": str(item.get("name") or ""), "arguments": ""}
            return [self._chunk({"tool_calls": [call]})]
        if kind == "response.function_call_arguments.delta":
            index = self._calls.get(int(event.get("output_index") or 0), 0)
            piece = {"index": index, "function": {"arguments": str(event.get("delta") or "")}}
            return [self._chunk({"tool_calls": [piece]})]
        if kind in ("response.completed", "response.incomplete"):
            response = event.get("response") or {}
            reason = (response.get("incomplete_details") or {}).get("reason")
            finish = "length" if reason == "max_output_tokens" else "tool_calls" if self._calls else "stop"
            self.done = True
            used = usage(response.get("usage"))
            return [self._chunk({}, finish), usage_chunk(id=self.id, model=self.model, usage=used)]
        if kind in ("error", "response.failed"):
            error = event.get("error") or (event.get("response") or {}).get("error") or event
            raise UpstreamError(f"upstream stream error: {str(error.get('message') or kind)[:300]}")
        return []
