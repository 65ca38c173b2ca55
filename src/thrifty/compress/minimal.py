"""The lossless pass: whitespace and JSON squeezed, repeats referenced, empty turns dropped.

Nothing the model reads changes meaning: a tool result that is JSON is
re-encoded without whitespace; prose loses trailing spaces, runs of blank
lines and runs of spaces between words; code blocks and indentation stay as
they are. A long message or tool result identical to an earlier one becomes a
one-line reference to it (a tool result stays in place with its
``tool_call_id``, so every call keeps its result). User and assistant turns
with no text and no tool call go. System messages and the last user message
are left exactly as sent. Running the pass twice changes nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Message
from .parts import (
    Tally,
    is_empty_turn,
    last_user_index,
    map_text,
    opening,
    rewritable,
    role,
    text_of,
    with_text,
)
from .text import minify_json, squeeze

MIN_REPEAT_CHARS = 160  # shorter repeats cost less than the reference to them


def normalise(message: Message, tally: Tally) -> Message:
    """Whitespace and JSON squeezed in one message (not system, not protected)."""
    kind = role(message)
    if kind == "system" or not rewritable(message):
        return message

    def change(text: str) -> str:
        minified = minify_json(text)
        if minified is not None:
            if len(minified) < len(text.strip()):
                tally.add("json")
            return minified if len(minified) <= len(text) else text
        squeezed = squeeze(text, prose=kind != "tool")
        if len(squeezed) < len(text):
            tally.add("whitespace")
        return squeezed

    return map_text(message, change)


def minimal(messages: Sequence[Message], tally: Tally, *, dedupe: bool = True) -> list[Message]:
    last_user = last_user_index(messages)
    out: list[Message] = []
    for i, message in enumerate(messages):
        if i == last_user:
            out.append(message)
            continue
        if is_empty_turn(message) and i != len(messages) - 1:
            tally.add("empty")
            continue
        out.append(normalise(message, tally))
    return dedupe_exact(out, tally, protect=_index_of(out, messages, last_user)) if dedupe else out


def _index_of(out: list[Message], messages: Sequence[Message], index: int) -> int:
    if index < 0:
        return -1
    target = messages[index]
    return next((i for i, m in enumerate(out) if m is target), -1)


def dedupe_exact(messages: list[Message], tally: Tally, *, protect: int) -> list[Message]:
    """Long messages and tool results identical to an earlier one, replaced by a reference."""
    first: dict[tuple[str, str], str] = {}  # (role, text) -> how to refer to its first occurrence
    out: list[Message] = []
    for i, message in enumerate(messages):
        kind = role(message)
        text = text_of(message)
        if kind == "system" or len(text) < MIN_REPEAT_CHARS or not rewritable(message):
            out.append(message)
            continue
        key = (kind if kind != "tool" else "tool", text)
        seen = first.get(key)
        if seen is None:
            first[key] = _reference(message, text)
            out.append(message)
        elif i == protect or message.get("tool_calls"):
            out.append(message)
        else:
            tally.add("duplicate")
            out.append(with_text(message, seen))
    return out


def _reference(message: Message, text: str) -> str:
    if role(message) == "tool":
        call = message.get("tool_call_id")
        return (
            f"[identical to the result of tool call {call} above]"
            if call
            else "[identical to a tool result above]"
        )
    return f'[identical to the earlier {role(message)} message beginning "{opening(text)}"]'
