"""A cascade's verifier calls and escalated answers are paid: they are on the decision's cost,
one ledger row each (linked to the request, with tokens and cost), and in ``thrifty usage``."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.observe.usage import summarize
from thrifty.routing import Router
from thrifty.testing import FakeBackend, chat
from thrifty.types import parsed

from .test_cascade import cascade

MINI = {"input": 0.15, "output": 0.6}


def gateway(tmp_path: Path, router: dict[str, Any], scripts: dict[str, str]) -> Gateway:
    """A real stack: fake deployments priced as gpt-4o-mini, tiers at the same prices."""
    config = parse_config(
        {
            "server": {"data_dir": str(tmp_path)},
            "models": [
                {
                    "name": name,
                    "deployments": [
                        {
                            "provider": "fake",
                            "model": name,
                            "price_model": "openai/gpt-4o-mini",
                            "options": {"script": script},
                        }
                    ],
                }
                for name, script in scripts.items()
            ],
            "routing": {
                "tiers": [
                    {"name": "fast", "model": "small", "price": MINI},
                    {"name": "peer", "model": "other", "price": MINI},
                    {"name": "powerful", "model": "large", "price": MINI},
                ],
                "routers": [{"name": "c", "policy": "cascade", "candidates": ["fast", "powerful"], **router}],
            },
        },
        source="thrifty.yaml",
    )
    return Gateway(config)


def ledger_rows(gw: Gateway) -> list[dict[str, Any]]:
    assert gw.observer is not None
    db = sqlite3.connect(gw.observer.ledger_settings.path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM requests ORDER BY purpose, request_id")]
    finally:
        db.close()


async def test_consistency_samples_are_ledgered_priced_and_on_the_decision(tmp_path: Path) -> None:
    gw = gateway(
        tmp_path,
        {"verifier": "consistency", "samples": 3, "accept": {"fast": 0.6}},
        {"small": "42", "other": "41", "large": "42 it is"},
    )
    await gw.start()
    request = chat("What is 6 * 7?", model="c")
    response = await gw.complete(request)
    router = gw.backends["c"]
    assert isinstance(router, Router)
    decision = router.decision_for(request.trace.request_id)
    await gw.aclose()
    assert response.text == "42"
    assert decision is not None and decision.verdicts == {"fast": True}
    answer, *samples = ledger_rows(gw)
    rid = request.trace.request_id
    assert (answer["request_id"], answer["purpose"], answer["verdict"]) == (rid, "", 1.0)
    assert [(s["purpose"], s["parent_id"], s["tier"]) for s in samples] == [("verify", rid, "fast")] * 2
    assert {s["request_id"] for s in samples} == {f"{rid}-sample1", f"{rid}-sample2"}
    for row in samples:
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["cost_usd"] > 0
    # the three calls cost the same (same tier, same question): the decision holds all three
    assert decision.cost_usd == pytest.approx(3 * answer["cost_usd"])
    assert sum(r["cost_usd"] for r in [answer, *samples]) == pytest.approx(decision.cost_usd)
    assert gw.observer is not None
    total = summarize(gw.observer.ledger_settings.path, "model")[-1]
    assert total["requests"] == 1  # the samples are the request's spend, not requests of their own
    assert total["cost_usd"] == pytest.approx(decision.cost_usd)
    assert total["completion_tokens"] == 3 * answer["completion_tokens"]


async def test_a_peer_that_disagrees_escalates_and_every_call_has_its_row(tmp_path: Path) -> None:
    gw = gateway(
        tmp_path,
        {"verifier": "agreement", "peer": "peer"},
        {"small": "42", "other": "41", "large": "the answer is 42"},
    )
    await gw.start()
    request = chat("What is 6 * 7?", model="c")
    response = await gw.complete(request)
    await gw.aclose()
    assert response.text == "the answer is 42"
    rows = {r["purpose"]: r for r in ledger_rows(gw)}
    rid = request.trace.request_id
    served, escalated, peer = rows[""], rows["escalated"], rows["verify"]
    assert (served["tier"], served["verdict"]) == ("powerful", None)  # the last tier is not judged
    assert served["deployment"].startswith("large")
    assert (escalated["request_id"], escalated["tier"], escalated["verdict"]) == (f"{rid}-fast", "fast", 0.0)
    assert escalated["deployment"].startswith("small") and escalated["parent_id"] == rid
    assert (peer["request_id"], peer["tier"], peer["parent_id"]) == (f"{rid}-peer", "fast", rid)
    assert peer["deployment"].startswith("other")
    for row in (escalated, peer):
        assert row["completion_tokens"] > 0 and row["cost_usd"] > 0


async def test_a_judge_call_is_priced_with_the_judge_tier() -> None:
    tiers = [
        {"name": "fast", "model": "small", "price": {"input": 0.1, "output": 0.2}},
        {"name": "balanced", "model": "medium", "price": {"input": 1.0, "output": 2.0}},
        {"name": "powerful", "model": "large", "price": {"input": 10.0, "output": 30.0}},
    ]
    backends = {
        "small": FakeBackend("Paris", name="small"),
        "medium": FakeBackend("9", name="medium"),
        "large": FakeBackend("l", name="large"),
    }
    router = cascade(tiers, backends, candidates=["fast", "powerful"], verifier="judge", judge="balanced")
    request = chat("Capital of France?")
    assert (await router.complete(request)).text == "Paris"
    [call] = request.trace.calls
    assert (call.purpose, call.model, call.tier) == ("verify", "medium", "fast")
    decision = router.decision_for(request.trace.request_id)
    assert decision is not None
    answer = (3 * 0.1 + 1 * 0.2) / 1e6  # "Capital of France?" is 3 words, "Paris" one
    judged = (call.usage.prompt_tokens * 1.0 + call.usage.completion_tokens * 2.0) / 1e6
    assert abs(decision.cost_usd - (answer + judged)) < 1e-15


async def test_a_streamed_cascade_notes_the_escalated_answer_and_the_samples(
    tiers: list[dict[str, Any]],
) -> None:
    backends = {
        "small": FakeBackend(["42", "41", "40"], name="small"),
        "medium": FakeBackend("43", name="medium"),
        "large": FakeBackend("44", name="large"),
    }
    router = cascade(
        tiers, backends, candidates=["fast", "powerful"], verifier="consistency", samples=3, accept=0.6
    )
    request = chat("What is 6 * 7?")
    request.stream = True
    text = ""
    async for piece in router.stream(request):
        for choice in parsed(piece).get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
    assert text == "44"
    purposes = sorted((c.purpose, c.tier) for c in request.trace.calls)
    assert purposes == [("escalated", "fast"), ("verify", "fast"), ("verify", "fast")]
    escalated = next(c for c in request.trace.calls if c.purpose == "escalated")
    assert escalated.verdict is False and escalated.usage.completion_tokens == 1


class Spend:
    """A stand-in for the gateway's tenancy: admits everything, records what each request settles."""

    def __init__(self) -> None:
        self.settled: list[tuple[int, float]] = []

    async def admit(self, *args: object, **kw: object) -> str:
        return "ticket"

    def settle(self, ticket: str, tokens: int, cost_usd: float) -> None:
        self.settled.append((tokens, cost_usd))

    async def aclose(self) -> None:
        pass


async def test_the_keys_spend_includes_the_verifier_calls(tmp_path: Path) -> None:
    gw = gateway(
        tmp_path,
        {"verifier": "consistency", "samples": 3, "accept": {"fast": 0.6}},
        {"small": "42", "other": "41", "large": "42 it is"},
    )
    spend = Spend()
    gw.tenancy = spend  # type: ignore[assignment]
    await gw.start()
    request = chat("What is 6 * 7?", model="c")
    # a virtual key's request: admitted, then settled
    request.trace.principal = SimpleNamespace(key=SimpleNamespace(team=""))
    await gw.complete(request)
    await gw.aclose()
    rows = ledger_rows(gw)
    [(tokens, cost)] = spend.settled
    assert tokens == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    assert cost == pytest.approx(sum(r["cost_usd"] for r in rows)) and len(rows) == 3
