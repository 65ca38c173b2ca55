"""Feedback: ``{response_id, rating 1-5, comment?, corrected_answer?, user?}`` checked, and its signal.

A checked :class:`Feedback` becomes a :class:`Signal` once the ledger has linked
it to its request (owner, model, route); layers that learn from more than the
rating (:class:`TakesSignals`, the learning layer) receive the whole signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..errors import InvalidRequest

MAX_COMMENT = 10_000
MAX_ANSWER = 200_000
MAX_USER = 256


@dataclass(frozen=True)
class Feedback:
    response_id: str
    rating: int
    comment: str | None = None
    corrected_answer: str | None = None
    user: str | None = None  # the end user who rated, when the client names one


@dataclass(frozen=True)
class Signal:
    """One piece of evidence about one served answer, linked to its ledger row."""

    response_id: str
    rating: int
    owner: str = ""  # the key id that rated (and owns the response)
    comment: str | None = None
    corrected_answer: str | None = None
    user: str | None = None
    model: str | None = None
    route: str | None = None


@runtime_checkable
class TakesSignals(Protocol):
    """A layer that learns from whole signals and can show what it learned."""

    async def on_signal(self, signal: Signal) -> dict[str, Any] | None:
        """Learn from ``signal``; what was learned (shown to the rater), None if not this layer's."""

    def report(self, owner: str | None = None) -> dict[str, Any]:
        """Experiments, evidence and promotions (``owner``: only that key's); ``GET /admin/learning``."""


def _optional_text(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{key}' must be a string, got {type(value).__name__}", param=key)
    if len(value) > limit:
        raise InvalidRequest(f"'{key}' is longer than {limit} characters", param=key)
    _check_text(value, key)
    return value


def _check_text(value: str, key: str) -> None:
    """Refuse text the ledger cannot store (a lone surrogate is not valid Unicode)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            f"'{key}' contains a lone surrogate; send valid Unicode text", param=key
        ) from None


def parse_feedback(body: Any) -> Feedback:
    """A checked :class:`Feedback`; raises InvalidRequest naming the bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object with 'response_id' and 'rating'")
    response_id = body.get("response_id")
    if not isinstance(response_id, str) or not response_id.strip():
        raise InvalidRequest(
            "'response_id' is required: the id of the response being rated", param="response_id"
        )
    _check_text(response_id, "response_id")
    rating = body.get("rating")
    if rating is None:
        raise InvalidRequest("'rating' is required: an integer from 1 to 5", param="rating")
    if isinstance(rating, float) and rating.is_integer():
        rating = int(rating)
    if isinstance(rating, bool) or not isinstance(rating, int):
        raise InvalidRequest(f"'rating' must be an integer from 1 to 5, got {rating!r}", param="rating")
    if not 1 <= rating <= 5:
        raise InvalidRequest(f"'rating' must be from 1 to 5, got {rating}", param="rating")
    return Feedback(
        response_id=response_id,
        rating=rating,
        comment=_optional_text(body, "comment", MAX_COMMENT),
        corrected_answer=_optional_text(body, "corrected_answer", MAX_ANSWER),
        user=_optional_text(body, "user", MAX_USER),
    )
