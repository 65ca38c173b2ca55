"""Text pieces the passes work on: code fences, whitespace, JSON, paragraphs, sentences, words.

Everything here is a pure function of a string. Code (a fenced block) is
always handed back byte for byte: a pass that must not touch code asks
:func:`split_code` and leaves the code parts alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import orjson

_FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n.*?^[ \t]*\1[ \t]*$\n?", re.M | re.S)
_TRAILING = re.compile(r"[ \t]+$", re.M)
_BLANK_RUNS = re.compile(r"\n{3,}")
_INNER_SPACES = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")
_PARAGRAPH = re.compile(r"\n[ \t]*\n+")
_SENTENCE_END = re.compile(r"([.!?][\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"[a-z0-9]+")
_QUOTE = re.compile(r"^[ \t]*>+[ \t]?", re.M)

_STOP = (
    "a an and are as at be but by for from has have he her his i if in into is it its me my no not of on or "
    "our she so that the their them then there these they this to was we were what when where which who "
    "will with you your do does did can could would should about than too very just also"
)
STOPWORDS = frozenset(_STOP.split())


def split_code(text: str) -> list[tuple[bool, str]]:
    """``text`` as ``(is_code, part)`` pieces, in order; joined they give ``text`` back."""
    if "```" not in text and "~~~" not in text:
        return [(False, text)]
    out: list[tuple[bool, str]] = []
    at = 0
    for match in _FENCE.finditer(text):
        if match.start() > at:
            out.append((False, text[at : match.start()]))
        out.append((True, match.group(0)))
        at = match.end()
    if at < len(text):
        out.append((False, text[at:]))
    return out


def has_code(text: str) -> bool:
    return any(is_code for is_code, _ in split_code(text))


def squeeze(text: str, *, prose: bool) -> str:
    """Whitespace the model does not read, gone: trailing spaces, runs of blank lines and
    (in ``prose``) runs of spaces between words. Code blocks and indentation are kept."""
    parts = []
    for is_code, part in split_code(text):
        if not is_code:
            if " \n" in part or "\t\n" in part or part.endswith((" ", "\t")):
                part = _TRAILING.sub("", part)
            if "\n\n\n" in part:
                part = _BLANK_RUNS.sub("\n\n", part)
            if prose and ("  " in part or "\t" in part):
                part = _INNER_SPACES.sub(" ", part)
        parts.append(part)
    return "".join(parts).strip("\n") if text.strip() else ""


def minify_json(text: str) -> str | None:
    """``text`` re-encoded without whitespace when it is one JSON object or array, else None."""
    stripped = text.strip()
    if len(stripped) < 2 or stripped[0] not in "[{" or stripped[-1] not in "]}":
        return None
    try:
        value = orjson.loads(stripped)
        return orjson.dumps(value).decode()
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        return None


def is_json(text: str) -> bool:
    stripped = text.strip()
    if len(stripped) < 2 or stripped[0] not in "[{":
        return False
    try:
        orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return False
    return True


def paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks of ``text`` (code blocks are one block each)."""
    out: list[str] = []
    for is_code, part in split_code(text):
        if is_code:
            out.append(part.strip("\n"))
        else:
            out.extend(p for p in (q.strip("\n") for q in _PARAGRAPH.split(part)) if p.strip())
    return out


def sentences(text: str) -> Iterator[str]:
    """The sentences (or lines) of a prose paragraph."""
    for piece in _SENTENCE_END.sub("\\1\n", text).split("\n"):
        if piece and not piece.isspace():
            yield piece.strip()


def words(text: str) -> list[str]:
    """Lower-case word tokens, quote markers (``> ``) ignored."""
    if ">" in text:
        text = _QUOTE.sub("", text)
    return _WORD.findall(text.lower())


def terms(text: str) -> list[str]:
    """The words of ``text`` that carry meaning (no stopwords)."""
    return [w for w in words(text) if w not in STOPWORDS]


def shingles(tokens: list[str]) -> set[tuple[str, ...]]:
    """The 3-word windows of ``tokens`` (the whole list when shorter)."""
    if len(tokens) <= 3:
        return {tuple(tokens)} if tokens else set()
    return set(zip(tokens, tokens[1:], tokens[2:], strict=False))
