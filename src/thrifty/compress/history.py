"""The balanced passes over a conversation's history.

:func:`near_duplicates`: a paragraph (or quoted text) that repeats one of an
earlier message with few changes becomes a one-line reference; a tool output
that mostly repeats an earlier one keeps only its new lines. Word 3-gram
shingles and Jaccard similarity, found through an inverted index so the pass
stays linear in the history.

:func:`summarise_old_turns`: when the conversation is over its token budget,
the oldest turns become one extractive summary message -- per turn, the
sentences most related to the last user message, tool calls with their
arguments, and every code block verbatim. The cut never separates a tool call
from its result, and it moves in steps of ``block`` messages so the prompt's
prefix stays the same from one turn to the next and provider caches hit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

from ..types import Message
from .parts import Tally, last_user_index, opening, rewritable, role, text_of, tool_call_names, with_text
from .relevance import bm25
from .text import is_json, paragraphs, sentences, shingles, split_code, words
from .tokens import Counter as TokenCounter
from .tokens import message_tokens

NEAR = 0.8  # Jaccard similarity of shingles that makes a paragraph a near-duplicate
MIN_PARAGRAPH_WORDS = 15
MIN_TOOL_LINES = 4
TOOL_OVERLAP = 0.6  # share of a tool output's lines already seen that makes it a near-duplicate
SUMMARY_SHARE = 0.2  # sentences of a turn kept in the summary
MAX_TOOL_CHARS = 300  # of an old tool result's text in the summary
SUMMARY_HEADER = "[Summary of the {n} earlier messages of this conversation, condensed by thrifty]"
Summarise = Callable[[Sequence[Message], str], str]  # (old turns, the last user text) -> the summary


class _Index:
    """Paragraphs seen so far, found through the shingles they share with a new one.

    Each shingle points at the latest paragraph holding it; the few paragraphs
    pointed at most are then compared exactly.
    """

    def __init__(self) -> None:
        self.sets: list[set[tuple[str, ...]]] = []
        self.owners: list[str] = []
        self.latest: dict[tuple[str, ...], int] = {}
        self.seen: set[tuple[str, ...]] = set()  # latest's keys as a set: & stays O(len(grams))

    def match(self, grams: set[tuple[str, ...]]) -> str | None:
        shared = grams & self.seen
        if len(shared) < NEAR * len(grams):
            return None
        hits = Counter(self.latest[gram] for gram in shared)
        for pid, _ in hits.most_common(3):
            common = len(grams & self.sets[pid])
            union = len(grams) + len(self.sets[pid]) - common
            if union and common / union >= NEAR:
                return self.owners[pid]
        return None

    def add(self, grams: set[tuple[str, ...]], owner: str) -> None:
        pid = len(self.sets)
        self.sets.append(grams)
        self.owners.append(owner)
        self.seen |= grams
        self.latest.update(dict.fromkeys(grams, pid))


def near_duplicates(messages: list[Message], tally: Tally) -> list[Message]:
    protect = last_user_index(messages)
    index = _Index()
    seen_lines: list[tuple[str, set[str]]] = []  # (tool call id, its output's lines)
    out: list[Message] = []
    for i, message in enumerate(messages):
        kind = role(message)
        text = text_of(message)
        if kind == "system" or not text or not rewritable(message) or i == protect == len(messages) - 1:
            out.append(message)  # (nothing comes after the question to repeat it)
            continue
        if kind == "tool":
            message = _tool_overlap(message, text, seen_lines, tally, i != protect)
        elif not message.get("tool_calls"):
            message = _paragraph_repeats(message, text, index, tally, i != protect, f"{kind} message")
        out.append(message)
    return out


def _paragraph_repeats(
    message: Message, text: str, index: _Index, tally: Tally, change: bool, owner: str
) -> Message:
    kept: list[str] = []
    changed = False
    for block in paragraphs(text):
        if block.lstrip().startswith(("```", "~~~")):
            kept.append(block)
            continue
        tokens = words(block)
        if len(tokens) < MIN_PARAGRAPH_WORDS:
            kept.append(block)
            continue
        grams = shingles(tokens)
        source = index.match(grams) if change else None
        if source is None:
            index.add(grams, owner)
            kept.append(block)
        else:
            tally.add("near-duplicate")
            changed = True
            quoted = block.lstrip().startswith(">")
            kept.append(
                f'{"> " if quoted else ""}[repeats a paragraph of an earlier {source}: "{opening(block.lstrip("> "), 6)}"]'
            )
    return with_text(message, "\n\n".join(kept)) if changed else message


def _tool_overlap(
    message: Message, text: str, seen: list[tuple[str, set[str]]], tally: Tally, change: bool
) -> Message:
    lines = [line for line in text.splitlines() if line.strip()]
    call = str(message.get("tool_call_id", ""))
    if len(lines) < MIN_TOOL_LINES or is_json(text):
        return message
    current = set(lines)
    best: tuple[float, str, set[str]] | None = None
    for source, earlier in seen:
        overlap = len(current & earlier) / len(current)
        if best is None or overlap > best[0]:
            best = (overlap, source, earlier)
    seen.append((call, current))
    if not change or best is None or best[0] < TOOL_OVERLAP:
        return message
    overlap, source, earlier = best
    fresh = [line for line in text.splitlines() if line.strip() and line not in earlier]
    tally.add("near-duplicate")
    head = f"[same as the result of tool call {source} above"
    body = head + ("]" if not fresh else ", except these lines:]\n" + "\n".join(fresh))
    return with_text(message, body) if len(body) < len(text) else message


def summarise_old_turns(
    messages: list[Message],
    tally: Tally,
    count: TokenCounter,
    *,
    budget: int,
    block: int,
    summarise: Summarise | None = None,
) -> list[Message]:
    """The oldest turns as one summary when the whole is over ``budget`` tokens.

    ``summarise`` writes the summary (default: the extractive one below).
    """
    sizes = [message_tokens(m, count) for m in messages]
    if sum(sizes) <= budget:
        return messages
    start = 0
    while start < len(messages) and role(messages[start]) == "system":
        start += 1
    last_user = last_user_index(messages)
    if last_user <= start:
        return messages
    cut, recent = len(messages), 0
    while cut > start and recent + sizes[cut - 1] <= budget:
        cut -= 1
        recent += sizes[cut]
    cut = min(cut, last_user)
    cut = start + (cut - start) // block * block  # step the cut so the prefix stays stable
    while cut < last_user and role(messages[cut]) == "tool":
        cut += 1  # never separate a tool result from its call
    old = messages[start:cut]
    if len(old) < 2:
        return messages
    write = summarise or extractive_summary
    summary: Message = {"role": "user", "content": write(old, text_of(messages[last_user]))}
    if message_tokens(summary, count) >= sum(sizes[start:cut]):
        return messages
    tally.add("summarised", len(old))
    return [*messages[:start], summary, *messages[cut:]]


def extractive_summary(old: Sequence[Message], query: str) -> str:
    """Per turn, the lead sentence and those nearest ``query``; tool calls; code verbatim."""
    names = tool_call_names(old)
    lines = [SUMMARY_HEADER.format(n=len(old))]
    for message in old:
        kind = role(message)
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            lines.append(
                f"- assistant called {function.get('name', 'a tool')}({function.get('arguments', '')})"
            )
        text = text_of(message)
        if not text.strip():
            continue
        if kind == "system":
            lines.append(f"- system: {text}")
            continue
        prose, code = _prose_and_code(text)
        picked = _extract(prose, query)
        label = f"{names.get(str(message.get('tool_call_id')), 'tool')} result" if kind == "tool" else kind
        if kind == "tool" and len(picked) > MAX_TOOL_CHARS:
            picked = picked[:MAX_TOOL_CHARS].rsplit(" ", 1)[0] + " ..."
        if picked:
            lines.append(f"- {label}: {picked}")
        lines.extend(code)
    return "\n".join(lines)


def _prose_and_code(text: str) -> tuple[str, list[str]]:
    prose: list[str] = []
    code: list[str] = []
    for is_code, part in split_code(text):
        (code if is_code else prose).append(part.strip("\n") if is_code else part)
    return " ".join(prose), code


def _extract(text: str, query: str) -> str:
    """The lead sentence and the sentences most related to ``query``, in their order."""
    found = list(sentences(text))
    if len(found) <= 1:
        return found[0] if found else ""
    keep = max(1, math.ceil(len(found) * SUMMARY_SHARE))
    scores = bm25(found, query)
    scores[0] += max(scores) + 1.0  # the lead sentence says what the turn was about
    chosen = sorted(sorted(range(len(found)), key=lambda k: -scores[k])[:keep])
    return " ".join(found[k] for k in chosen)
