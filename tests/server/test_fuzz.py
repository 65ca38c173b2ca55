"""Fuzzing from ``/openapi.json``: no 5xx, and every 4xx is OpenAI's error JSON naming the problem.

Two fuzzers, one real gateway on loopback:

- schemathesis generates valid and invalid requests for every documented operation
  (``EXAMPLES`` of each per operation and mode, about 1,900 in all), sent with an admin
  key, a client key, a wrong key or none; Hypothesis draws from a fixed seed with no
  example database, so every run sends the same cases;
- a type-confusion sweep puts each wrong kind of value (object, array, lone surrogate,
  300-deep nesting, 2**64...) in each field of a valid body, one at a time (about 1,400).

Every answer is also checked against the document (status, content type, x-thrifty-* and
x-ratelimit-* headers, body). A failure here is a real finding, never noise. The longer run is
``benchmarks/fuzz_routes.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from thrifty.config import ServerConfig
from thrifty.server.openapi import document

from .fuzzing import (
    VALID_ONLY,
    Live,
    Outcome,
    check_answer,
    fuzz,
    live_gateway,
    load_schema,
    operations,
    type_confusion,
)

# The whole fuzz run happens in one module fixture's setup; on a loaded machine it takes minutes.
pytestmark = pytest.mark.timeout(1200)

EXAMPLES = 25  # per operation and mode
SEED = 20261202


def _operations() -> list[str]:
    return [f"{method} {path}" for method, path in operations(document(ServerConfig()))]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_gateway(Path(tmp_path_factory.mktemp("fuzz"))) as running:
        yield running


@pytest.fixture(scope="module")
def outcomes(live: Live) -> dict[str, list[Outcome]]:
    found: dict[str, list[Outcome]] = {}
    fuzz(live, EXAMPLES, lambda o: found.setdefault(o.operation, []).append(o), seed=SEED)
    type_confusion(live, lambda o: found.setdefault(o.operation, []).append(o))
    return found


def _report(bad: list[Outcome]) -> str:
    lines = [f"{o.status} ({o.credential} key): {o.problem()}\n    {o.curl[:600]}" for o in bad[:5]]
    return f"{len(bad)} bad answers, the first ones:\n" + "\n".join(lines)


@pytest.mark.parametrize("operation", _operations())
def test_no_fuzzed_request_gets_a_5xx_or_an_unnamed_4xx(
    outcomes: dict[str, list[Outcome]], operation: str
) -> None:
    seen = outcomes.get(operation, [])
    assert seen, f"the fuzzer sent nothing to {operation}"
    bad = [o for o in seen if o.problem() is not None]
    assert not bad, _report(bad)


@pytest.mark.parametrize("operation", _operations())
def test_every_fuzzed_answer_matches_the_document(
    live: Live, outcomes: dict[str, list[Outcome]], operation: str
) -> None:
    """Status, content type, x-thrifty-* headers and body of each answer, as /openapi.json says."""
    doc = load_schema(live.url).raw_schema
    method, template = operation.split(" ", 1)
    wrong = []
    for outcome in outcomes.get(operation, []):
        try:
            check_answer(doc, template, method, (outcome.status, outcome.headers, outcome.body))
        except (AssertionError, ValueError) as exc:
            wrong.append(f"{exc}\n    {outcome.curl[:400]}")
    assert not wrong, f"{len(wrong)} answers off the document, e.g.:\n" + "\n".join(wrong[:3])


def test_the_fuzz_run_exercised_success_refusal_and_authentication(
    outcomes: dict[str, list[Outcome]],
) -> None:
    statuses = Counter(o.status for seen in outcomes.values() for o in seen)
    total = sum(statuses.values())
    # not a fixed count: it grows with the routes the document lists (each is checked to be hit above)
    assert total >= 10 * len(outcomes), statuses
    assert {200, 201, 303, 400, 401, 403, 404} <= set(statuses), statuses
    refused = [o for seen in outcomes.values() for o in seen if o.credential in ("wrong", "none")]
    assert any(o.status == 401 for o in refused)
    chat = outcomes["POST /v1/chat/completions"]
    assert any(o.status == 200 for o in chat) and any(o.status == 400 for o in chat)
    # Same seed, same cases, same answers: with -s, compare this line across runs.
    sent = "\n".join(f"{o.operation} {o.credential} {o.status}" for seen in outcomes.values() for o in seen)
    print(
        f"\nfuzz run: {total} answers {dict(sorted(statuses.items()))} "
        f"digest {hashlib.sha256(sent.encode()).hexdigest()[:16]}"
    )


def test_requests_the_document_calls_valid_are_not_refused_as_invalid(tmp_path: Path) -> None:
    """The other direction of the contract: what the schemas allow, the gateway takes (admin key)."""
    refused: list[Outcome] = []

    def keep(outcome: Outcome) -> None:
        if outcome.status in (400, 413, 422) and not _contradiction(outcome):
            refused.append(outcome)

    with live_gateway(tmp_path) as live:
        fuzz(live, 8, keep, seed=SEED, plan=VALID_ONLY)
    assert not refused, "\n".join(f"{o.operation}: {o.body[:200]!r}\n    {o.curl[:500]}" for o in refused[:5])


def _contradiction(outcome: Outcome) -> bool:
    # A regular expression cannot forbid `semantic` and `no-semantic` together; the document says so.
    if b"contradict" in outcome.body and "x-thrifty-cache: " in outcome.curl:
        return True
    # Refusals the document states in words, decided by what is stored, not by the body's shape:
    # a key or team name already taken, a revoked key rotated.
    error = json.loads(outcome.body).get("error", {})
    return error.get("code") == "duplicate" or (
        outcome.operation == "POST /admin/keys/{key_id}/rotate" and "revoked" in error.get("message", "")
    )
