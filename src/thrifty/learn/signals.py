"""Signals: explicit ratings and what users do that says the same thing.

A :class:`Signal` is one piece of evidence about one served answer. Explicit
signals come from ``POST /v1/feedback``; implicit ones are found here on the
way in: the same user sending the identical request again within the window
(a regenerate) or a near-duplicate of their previous question (a rephrase)
counts against the previous answer.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .contexts import Vector

MAX_USERS = 10_000


@dataclass(slots=True)
class Ask:
    request_id: str
    fingerprint: str  # the whole request: identical again means a regenerate
    vector: Any
    at: float


@dataclass(frozen=True, slots=True)
class Implicit:
    """An implicit signal against ``request_id``: ``kind`` is "regenerate" or "rephrase"."""

    request_id: str
    kind: str
    similarity: float


class RecentAsks:
    """Each user's previous question, to notice a regenerate or a rephrase."""

    def __init__(self, window_s: float, similarity: float) -> None:
        self.window_s = window_s
        self.similarity = similarity
        self._last: OrderedDict[tuple[str, str], Ask] = OrderedDict()

    def observe(self, owner: str, user: str, ask: Ask) -> Implicit | None:
        """Remember ``ask`` as the user's latest; the signal it gives against the previous one."""
        if not user:
            return None  # without an end-user id, two people on one key would look like one
        key = (owner, user)
        previous = self._last.get(key)
        self._last[key] = ask
        self._last.move_to_end(key)
        while len(self._last) > MAX_USERS:
            self._last.popitem(last=False)
        if previous is None or ask.at - previous.at > self.window_s:
            return None
        if ask.fingerprint == previous.fingerprint:
            return Implicit(previous.request_id, "regenerate", 1.0)
        similarity = _cosine(ask.vector, previous.vector)
        if similarity >= self.similarity:
            return Implicit(previous.request_id, "rephrase", similarity)
        return None


def _cosine(a: Vector, b: Vector) -> float:
    return float(a @ b)
