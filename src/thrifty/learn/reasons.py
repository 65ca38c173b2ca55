"""Why a user rated an answer as they did: a comment classified into reasons, offline.

Two stages. Keyword patterns catch the usual phrasings ("too long", "I need
examples", "answer in French") and may give several reasons at once ("too
complex, I need concrete examples" is both). A comment no pattern matches is
embedded with the stack's MiniLM and given the reason of its nearest prototype
sentence, when that is near enough. No comment (or nothing recognised) falls
back on the rating: 4-5 is ``good``, anything else unknown.

The labelled set and the measured accuracy live in ``tests/learn/reasons.jsonl``
and ``docs/bench/learn.md``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

Embed = Callable[[Sequence[str]], Any]  # texts -> unit vectors (a numpy array)

REASONS = (
    "too_complex",
    "too_long",
    "too_short",
    "wrong",
    "missing_examples",
    "wrong_language",
    "format",
    "off_topic",
    "good",
)
NEGATIVE = frozenset(REASONS) - {"good"}
PROTOTYPE_MIN = 0.45  # cosine a comment must reach to take its nearest prototype's reason

_PATTERNS: dict[str, str] = {
    "too_complex": r"too (complex|complicated|technical|advanced|hard|difficult|dense|academic)|"
    r"(confusing|jargon|over my head|hard to (follow|understand)|simpler|simply|"
    r"lost me|like i'?m (five|5)|for a beginner|plain english|eli5)",
    "too_long": r"too (long|verbose|wordy|much text)|(shorter|concise|tl;?dr|rambl|get to the point|"
    r"wall of text|waffle|brief(er)?\b|long.winded|padding|fluff)",
    "too_short": r"too (short|brief|terse|shallow)|(more detail|elaborate|expand|in depth|more depth|"
    r"incomplete|barely|one.liner|not enough|say more|longer)",
    "wrong": r"\b(wrong|incorrect|inaccurate|false|error|mistake|not true|untrue|made up|hallucinat|"
    r"outdated|bug|doesn'?t work|does not work|broken|nonsense|factually)",
    "missing_examples": r"(examples?|sample code|code snippet|show me (how|code)|concrete|practical|"
    r"illustrat|use case|demo|real.world|hands.on)",
    "wrong_language": r"(in (french|spanish|german|english|italian|portuguese|japanese|chinese|dutch|"
    r"my language)|wrong language|language i (asked|wrote)|not in english|"
    r"answer in|reply in|respond in|translate)",
    "format": r"\b(format|bullet|table|markdown|headings?|numbered|list form|json|structure|layout|"
    r"code block|paragraphs?|unreadable)",
    "off_topic": r"(off.topic|not what i asked|irrelevant|unrelated|didn'?t answer|did not answer|"
    r"missed the (point|question)|different question|not relevant|beside the point|"
    r"answered something else|ignored my question)",
    "good": r"\b(great|perfect|excellent|helpful|thanks|thank you|exactly|clear|spot on|"
    r"well explained|nice|good|love(d)? it|useful|brilliant|awesome)\b",
}
_COMPILED = {reason: re.compile(pattern, re.IGNORECASE) for reason, pattern in _PATTERNS.items()}
_NEGATED_GOOD = re.compile(
    r"\b(not|no|n't|never|hardly)\s+(very\s+|that\s+|so\s+)?"
    r"(great|good|helpful|clear|useful|perfect)",
    re.IGNORECASE,
)

_PROTOTYPES: dict[str, tuple[str, ...]] = {
    "too_complex": (
        "This was way over my head.",
        "I could not follow the explanation.",
        "Please explain it in a way a newcomer understands.",
    ),
    "too_long": (
        "I did not need an essay.",
        "Half of this could have been cut.",
        "It takes forever to get to the answer.",
    ),
    "too_short": (
        "That barely scratches the surface.",
        "I expected a fuller answer.",
        "You left out most of what I needed.",
    ),
    "wrong": (
        "That is not correct.",
        "The answer gives the wrong result.",
        "This contradicts the documentation.",
    ),
    "missing_examples": (
        "Show me how it looks in practice.",
        "I learn better from seeing a case.",
        "A worked case would have helped.",
    ),
    "wrong_language": (
        "I asked in Spanish and got English.",
        "Please reply the way I wrote to you.",
        "Why did you answer in another language?",
    ),
    "format": ("Hard to scan, please structure it.", "Put it in a list.", "The layout is a mess."),
    "off_topic": (
        "That has nothing to do with my question.",
        "You answered a different thing.",
        "Not what I was asking about.",
    ),
    "good": ("This answered my question.", "Just what I needed.", "Very clear, I understand now."),
}


class ReasonClassifier:
    """Comments in, reasons out; ``embed`` (optional) is the stack's MiniLM."""

    def __init__(self, embed: Embed | None = None) -> None:
        self.embed = embed
        self._lock = threading.Lock()
        self._prototypes: tuple[list[str], NDArray[np.float32]] | None = None

    def classify(self, comment: str | None, rating: int | None = None) -> list[str]:
        """The reasons of a comment, most specific first (run off the event loop: it may embed)."""
        reasons = keyword_reasons(comment or "")
        if not reasons and comment and comment.strip() and self.embed is not None:
            nearest = self.nearest(comment)
            if nearest is not None:
                reasons = [nearest]
        if not reasons and rating is not None and rating >= 4:
            reasons = ["good"]
        if rating is not None and rating <= 2 and reasons == ["good"]:
            return []  # "good" beside a bad rating is sarcasm or a slip: no reason known
        return reasons

    def nearest(self, comment: str) -> str | None:
        """The reason of the prototype sentence nearest ``comment``, if near enough."""
        labels, matrix = self._prototype_matrix()
        vector = self.embed([comment])[0] if self.embed is not None else None
        if vector is None:
            return None
        scores = matrix @ vector
        best = int(scores.argmax())
        return labels[best] if float(scores[best]) >= PROTOTYPE_MIN else None

    def _prototype_matrix(self) -> tuple[list[str], NDArray[np.float32]]:
        with self._lock:
            if self._prototypes is None:
                assert self.embed is not None
                labels = [r for r, texts in _PROTOTYPES.items() for _ in texts]
                texts = [t for ts in _PROTOTYPES.values() for t in ts]
                self._prototypes = (labels, self.embed(texts))
            return self._prototypes


def keyword_reasons(comment: str) -> list[str]:
    """The reasons whose patterns match, in :data:`REASONS` order; ``good`` only alone."""
    found = [reason for reason in REASONS if reason != "good" and _COMPILED[reason].search(comment)]
    if "wrong_language" in found and "wrong" in found:
        found.remove("wrong")  # "wrong language" is about the language, not the facts
    if found:
        return found
    if _COMPILED["good"].search(comment) and not _NEGATED_GOOD.search(comment):
        return ["good"]
    return []
