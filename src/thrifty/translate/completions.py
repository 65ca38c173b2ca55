"""Legacy text completions (``POST /v1/completions``) <-> chat completions, as pure functions.

Each prompt becomes one user message; the answer's text comes back as a
``text_completion`` choice (or stream chunk). Token-id prompts, ``suffix``,
``best_of > 1`` and ``logprobs`` are refused by name: no chat backend has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequest

_PASSED = (
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "user",
    "logit_bias",
    "stream",
    "stream_options",
    "thrifty",
)


def prompts(body: Mapping[str, Any]) -> list[str]:
    """The prompts of a completions body: a string or an array of strings."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(p, (int, list)) for p in prompt):
        raise InvalidRequest(
            "'prompt' as token ids is not supported; send the text.", param="prompt", code="unsupported_value"
        )
    raise InvalidRequest("'prompt' is required: a string or a non-empty array of strings.", param="prompt")


def chat_bodies(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One chat-completions body per prompt."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string.", param="model")
    texts = prompts(body)
    if body.get("suffix"):
        raise InvalidRequest(
            "'suffix' is not supported by this gateway.", param="suffix", code="unsupported_parameter"
        )
    if body.get("best_of") not in (None, 1):
        raise InvalidRequest("'best_of' must be 1 here.", param="best_of", code="unsupported_value")
    if body.get("logprobs") not in (None, 0, False):
        raise InvalidRequest(
            "'logprobs' is not supported on /v1/completions.", param="logprobs", code="unsupported_parameter"
        )
    if not isinstance(body.get("echo", False), bool):
        raise InvalidRequest("'echo' must be a boolean.", param="echo")
    if body.get("stream") and len(texts) > 1:
        raise InvalidRequest("A streamed completion takes one prompt.", param="prompt")
    common = {key: body[key] for key in _PASSED if body.get(key) is not None}
    return [{**common, "model": model, "messages": [{"role": "user", "content": text}]} for text in texts]


def completion_object(
    answers: list[Mapping[str, Any]], body: Mapping[str, Any], completion_id: str, created: int
) -> dict[str, Any]:
    """The chat completions (one per prompt, in order) as one ``text_completion``."""
    echo = bool(body.get("echo"))
    texts = prompts(body)
    choices = []
    prompt_tokens = completion_tokens = 0
    for i, answer in enumerate(answers):
        choice = (answer.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        choices.append(
            {
                "text": texts[i] + text if echo else text,
                "index": i,
                "logprobs": None,
                "finish_reason": choice.get("finish_reason") or "stop",
            }
        )
        usage = answer.get("usage") or {}
        prompt_tokens += int(usage.get("prompt_tokens") or 0)
        completion_tokens += int(usage.get("completion_tokens") or 0)
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": body.get("model"),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def completion_chunk(
    chunk: Mapping[str, Any], model: str, completion_id: str, created: int
) -> dict[str, Any] | None:
    """A chat chunk as a ``text_completion`` chunk; None for one that carries nothing (the role)."""
    out: dict[str, Any] = {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
    }
    if not chunk.get("choices"):
        if not chunk.get("usage"):
            return None
        return {**out, "choices": [], "usage": chunk["usage"]}
    choice = chunk["choices"][0]
    text = (choice.get("delta") or {}).get("content") or ""
    finish = choice.get("finish_reason")
    if not text and finish is None:
        return None
    return {**out, "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}
