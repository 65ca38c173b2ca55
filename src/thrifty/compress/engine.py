"""The passes of each mode, in order, over a list of messages.

    minimal     squeeze whitespace and JSON, drop empty turns, reference exact repeats
    balanced    minimal's squeeze, then: summarise turns beyond the budget, reference
                exact repeats, reference near-duplicate paragraphs and tool outputs
    aggressive  balanced, then keep only the context most relevant to the question

Summarising comes before de-duplication, so a reference never points at a
message the summary took away.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Message
from .extract import Scorer, extract
from .history import Summarise, near_duplicates, summarise_old_turns
from .minimal import dedupe_exact, minimal
from .parts import Tally, last_user_index
from .relevance import bm25
from .settings import Knobs
from .tokens import Counter, estimate, messages_tokens


def shrink(
    messages: Sequence[Message],
    knobs: Knobs,
    count: Counter = estimate,
    scorer: Scorer = bm25,
    summarise: Summarise | None = None,
) -> tuple[list[Message], Tally]:
    """``messages`` compressed as ``knobs.mode`` says, and what went; never more tokens than before."""
    tally = Tally()
    if knobs.mode == "off":
        return list(messages), tally
    out = _passes(messages, knobs, count, scorer, tally, summarise)
    if messages_tokens(out, count) > messages_tokens(messages, count):
        return list(messages), Tally()
    return out, tally


def _passes(
    messages: Sequence[Message],
    knobs: Knobs,
    count: Counter,
    scorer: Scorer,
    tally: Tally,
    summarise: Summarise | None,
) -> list[Message]:
    if knobs.mode == "minimal":
        return minimal(messages, tally)
    out = minimal(messages, tally, dedupe=False)
    out = summarise_old_turns(
        out, tally, count, budget=knobs.budget_tokens, block=knobs.block, summarise=summarise
    )
    out = dedupe_exact(out, tally, protect=last_user_index(out))
    out = near_duplicates(out, tally)
    if knobs.mode == "aggressive":
        out = extract(out, tally, count, ratio=knobs.ratio, scorer=scorer)
    return out
