"""The aggressive pass: keep the context most relevant to the question, down to a target ratio.

Long context -- earlier turns, tool outputs, and the document part of a long
last user message -- is cut into chunks (a sentence of prose, a whole code
block) and each chunk is scored by its relevance to the question (the last
user message; when that is long, its first and last paragraphs). The best
chunks are kept, in their original order, until they hold ``ratio`` of the
context's tokens. The question itself, system messages, JSON and tool-call
arguments are never cut, and every message keeps at least one chunk, so no
tool result goes missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..types import Message
from .parts import Tally, last_user_index, rewritable, role, text_of, with_text
from .relevance import bm25
from .text import is_json, paragraphs, sentences
from .tokens import Counter as TokenCounter

Scorer = Callable[[Sequence[str], str], list[float]]
LONG_QUESTION_WORDS = 120  # a last user message longer than this carries a document
NEIGHBOUR = 0.25  # share of a neighbour's score a chunk inherits (answers sit next to their cue)


@dataclass(slots=True)
class _Chunk:
    message: int
    paragraph: int
    line: int
    text: str
    tokens: int
    pooled: bool  # False: protected, always kept
    kept: bool = True


def question(messages: Sequence[Message]) -> str:
    """What the context is scored against: the last user message, or its ends when it is long."""
    index = last_user_index(messages)
    if index < 0:
        return ""
    text = text_of(messages[index])
    if len(text.split()) <= LONG_QUESTION_WORDS:
        return text
    blocks = paragraphs(text)
    return blocks[0] if len(blocks) == 1 else blocks[0] + "\n\n" + blocks[-1]


def extract(
    messages: list[Message], tally: Tally, count: TokenCounter, *, ratio: float, scorer: Scorer = bm25
) -> list[Message]:
    query = question(messages)
    chunks = _chunks(messages, count)
    pool = [c for c in chunks if c.pooled]
    if not query.strip() or len(pool) < 2:
        return messages
    raw = scorer([c.text for c in pool], query)
    scores = [
        s + NEIGHBOUR * ((raw[i - 1] if i else 0.0) + (raw[i + 1] if i + 1 < len(raw) else 0.0))
        for i, s in enumerate(raw)
    ]
    budget = ratio * sum(c.tokens for c in pool)
    for c in pool:
        c.kept = False
    kept = 0
    for i in sorted(range(len(pool)), key=lambda k: (-scores[k], k)):
        if kept + pool[i].tokens <= budget:
            pool[i].kept = True
            kept += pool[i].tokens
    _keep_one_per_message(pool, scores)
    dropped = sum(1 for c in pool if not c.kept)
    if not dropped:
        return messages
    tally.add("dropped-chunks", dropped)
    return _rebuild(messages, chunks)


def _chunks(messages: Sequence[Message], count: TokenCounter) -> list[_Chunk]:
    protect = last_user_index(messages)
    out: list[_Chunk] = []
    for m, message in enumerate(messages):
        text = text_of(message)
        if role(message) == "system" or not text or not rewritable(message) or is_json(text):
            continue
        blocks = paragraphs(text)
        long_question = m == protect and len(text.split()) > LONG_QUESTION_WORDS and len(blocks) > 2
        if m == protect and not long_question:
            continue
        for p, block in enumerate(blocks):
            ends = long_question and p in (0, len(blocks) - 1)
            if ends or block.lstrip().startswith(("```", "~~~")):
                out.append(_Chunk(m, p, 0, block, count(block), pooled=not ends))
                continue
            for n, line in enumerate(block.split("\n")):
                out.extend(_Chunk(m, p, n, s, count(s) + 1, pooled=True) for s in sentences(line))
    return out


def _keep_one_per_message(pool: list[_Chunk], scores: list[float]) -> None:
    best: dict[int, int] = {}
    kept: set[int] = set()
    for i, chunk in enumerate(pool):
        if chunk.kept:
            kept.add(chunk.message)
        elif chunk.message not in best or scores[i] > scores[best[chunk.message]]:
            best[chunk.message] = i
    for message, i in best.items():
        if message not in kept:
            pool[i].kept = True


def _rebuild(messages: list[Message], chunks: list[_Chunk]) -> list[Message]:
    cut = {c.message for c in chunks if not c.kept}
    kept: dict[int, dict[int, dict[int, list[str]]]] = {m: {} for m in cut}
    for chunk in chunks:
        if chunk.message in cut and chunk.kept:
            lines = kept[chunk.message].setdefault(chunk.paragraph, {})
            lines.setdefault(chunk.line, []).append(chunk.text)
    out = list(messages)
    for m, paras in kept.items():
        text = "\n\n".join("\n".join(" ".join(words) for words in lines.values()) for lines in paras.values())
        out[m] = with_text(messages[m], text)
    return out
