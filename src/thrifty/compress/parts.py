"""Reading and rewriting message text without losing anything else a message carries.

A message's content is a string, a list of parts (text, images, ...) or None.
Rewrites return a new dict (the client's messages are never mutated) with the
text parts changed and every other key -- ``tool_calls``, ``tool_call_id``,
``name``, images -- kept as it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..types import Message, message_text


@dataclass(slots=True)
class Tally:
    """What the passes removed, by kind, and the messages they left alone."""

    removed: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, n: int = 1) -> None:
        if n:
            self.removed[kind] += n

    def items(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(self.removed.items()))


def role(message: Message) -> str:
    value = message.get("role")
    return value if isinstance(value, str) else ""


def text_of(message: Message) -> str:
    return message_text(message)


def rewritable(message: Message) -> bool:
    """A message whose content has a shape the passes understand."""
    content = message.get("content")
    if content is None or isinstance(content, str):
        return True
    return isinstance(content, list) and all(isinstance(p, dict) for p in content)


def map_text(message: Message, change: Callable[[str], str]) -> Message:
    """``message`` with ``change`` applied to its text (each text part); itself when nothing changed."""
    content = message.get("content")
    if isinstance(content, str):
        new = change(content)
        return message if new == content else {**message, "content": new}
    if not isinstance(content, list):
        return message
    parts = []
    changed = False
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            new = change(part["text"])
            if new != part["text"]:
                part = {**part, "text": new}
                changed = True
        parts.append(part)
    return {**message, "content": parts} if changed else message


def with_text(message: Message, text: str) -> Message:
    """``message`` with its whole text replaced by ``text`` (non-text parts kept)."""
    content = message.get("content")
    if isinstance(content, list):
        others = [p for p in content if not (isinstance(p, dict) and p.get("type") == "text")]
        return {**message, "content": [{"type": "text", "text": text}, *others]}
    return {**message, "content": text}


def is_empty_turn(message: Message) -> bool:
    """A user or assistant turn that says nothing and calls nothing."""
    if role(message) not in ("user", "assistant") or message.get("tool_calls"):
        return False
    content = message.get("content")
    if content is None:
        return True
    if isinstance(content, str):
        return not content.strip()
    return isinstance(content, list) and not content


def last_user_index(messages: Sequence[Message]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if role(messages[i]) == "user":
            return i
    return -1


def tool_call_names(messages: Sequence[Message]) -> dict[str, str]:
    """tool_call_id -> the function it called."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                function = call.get("function") or {}
                names[str(call.get("id", ""))] = str(function.get("name", "tool"))
    return names


def opening(text: str, words: int = 8, chars: int = 60) -> str:
    """The first few words of ``text`` (at most ``chars`` characters), for a reference to it."""
    head = text.split()
    short = " ".join(head[:words])
    if len(short) > chars:
        short = short[:chars].rsplit(" ", 1)[0] if " " in short[:chars] else short[:chars]
    return short + (" ..." if short != " ".join(head) else "")
