"""Token counts when an upstream reports none: about four characters a token.

A real tokenizer (tiktoken) is not available offline, so this is a rough,
cheap estimate; callers mark it with ``trace.usage_estimated = True``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..types import Message, Usage, message_text

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators, per message


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_usage(messages: Iterable[Message], completion: str) -> Usage:
    prompt = 0
    for message in messages:
        prompt += MESSAGE_OVERHEAD + estimate_tokens(message_text(message))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            prompt += estimate_tokens(str(function.get("name", "")) + str(function.get("arguments", "")))
    return Usage(prompt_tokens=prompt, completion_tokens=estimate_tokens(completion))
