"""Cascades that check answers by comparing them: self-consistency, a peer's agreement, and a
router choosing where the cascade starts."""

from __future__ import annotations

from typing import Any

import pytest

from thrifty.backend import Backend
from thrifty.errors import ConfigError, UpstreamTimeout
from thrifty.routing import Router, build_routers, parse_routing
from thrifty.routing.verify import answer_key, keys_agree
from thrifty.testing import FakeBackend, chat

from .conftest import make_config


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("The answer is 42.", "n:42"),
        ("We add them: 12 + 30 = 42", "n:42"),
        ("1,200 apples", "n:1200"),
        ("It costs 3.50 dollars", "n:3.5"),
        ("42.0", "n:42"),
        ("B) Paris", "c:b"),
        ("(c)", "c:c"),
        ("Answer: d", "c:d"),
        ("Yes, it is.", "y:yes"),
        ("no", "y:no"),
        ("Paris is the capital.", "t:paris is the capital"),
        ("", "t:"),
    ],
)
def test_answer_keys(text: str, key: str) -> None:
    assert answer_key(text) == key


def test_keys_agree_exactly_or_by_word_overlap_for_free_text() -> None:
    assert keys_agree("n:42", "n:42") and not keys_agree("n:42", "n:41")
    assert not keys_agree("c:a", "t:a")  # a letter is not the word "a"
    assert keys_agree(answer_key("Paris is the capital"), answer_key("the capital is Paris!"))
    assert not keys_agree(answer_key("Paris is the capital"), answer_key("Lyon, surely"))
    assert keys_agree("t:", "t:")  # equal keys always agree
    assert not keys_agree("t:", "t:paris")


def cascade(tiers: list[dict[str, Any]], backends: dict[str, FakeBackend], **spec: Any) -> Router:
    groups: dict[str, Backend] = dict(backends)
    router = build_routers(
        make_config({"tiers": tiers, "routers": [{"name": "c", "policy": "cascade", **spec}]}), groups
    )["c"]
    assert isinstance(router, Router)
    return router


async def test_consistent_samples_keep_the_cheap_answer(tiers: list[dict[str, Any]]) -> None:
    backends = {
        "small": FakeBackend(["The answer is 42.", "42", "It is 42"], name="small"),
        "medium": FakeBackend("43", name="medium"),
        "large": FakeBackend("44", name="large"),
    }
    router = cascade(tiers, backends, verifier="consistency", samples=3, accept=0.6)
    request = chat("What is 6 * 7?", temperature=0)
    response = await router.complete(request)
    assert response.text == "The answer is 42."
    first, *samples = backends["small"].requests
    assert "logprobs" not in first.params  # this verifier needs no log-probabilities
    assert len(samples) == 2 and all(s.params["temperature"] == 0.7 for s in samples)
    assert first.params["temperature"] == 0  # the client's own request is untouched
    assert backends["medium"].requests == []
    decision = router.decision_for(request.trace.request_id)
    assert decision is not None and decision.score == 1.0 and decision.escalations == 0


async def test_inconsistent_samples_escalate(tiers: list[dict[str, Any]]) -> None:
    backends = {
        "small": FakeBackend(["42", "41", "40"], name="small"),
        "medium": FakeBackend(["43", "43", "43"], name="medium"),
        "large": FakeBackend("44", name="large"),
    }
    router = cascade(tiers, backends, verifier="consistency", samples=3, accept=0.5)
    request = chat("What is 6 * 7?")
    response = await router.complete(request)
    assert response.text == "43"  # the medium tier agreed with itself
    decision = router.decision_for(request.trace.request_id)
    assert decision is not None and decision.escalations == 1 and decision.tier == "balanced"


async def test_samples_that_all_fail_give_no_opinion(tiers: list[dict[str, Any]]) -> None:
    backends = {
        "small": FakeBackend(["42", UpstreamTimeout("slow"), UpstreamTimeout("slow")], name="small"),
        "medium": FakeBackend("43", name="medium"),
        "large": FakeBackend("44", name="large"),
    }
    router = cascade(tiers, backends, verifier="consistency", samples=3)
    assert (await router.complete(chat("6 * 7?"))).text == "42"  # no opinion counts as accepted


async def test_a_peer_that_agrees_keeps_the_cheap_answer_and_one_that_does_not_escalates(
    tiers: list[dict[str, Any]],
) -> None:
    backends = {
        "small": FakeBackend(["B) Paris", "B) Paris"], name="small"),
        "medium": FakeBackend(["b", "A"], name="medium"),
        "large": FakeBackend("C", name="large"),
    }
    router = cascade(tiers, backends, candidates=["fast", "powerful"], verifier="agreement", peer="balanced")
    assert (await router.complete(chat("Which? A) Lyon B) Paris"))).text == "B) Paris"
    escalated = chat("Which? A) Lyon B) Paris")
    assert (await router.complete(escalated)).text == "C"
    decision = router.decision_for(escalated.trace.request_id)
    assert decision is not None and decision.tried == ["fast", "powerful"] and decision.score == 0.0
    assert [r.model for r in backends["medium"].requests] == ["medium", "medium"]


async def test_the_rules_pick_where_the_cascade_starts(tiers: list[dict[str, Any]]) -> None:
    backends = {
        "small": FakeBackend("s", name="small"),
        "medium": FakeBackend(["m", "m", "m"], name="medium"),
        "large": FakeBackend("l", name="large"),
    }
    router = cascade(tiers, backends, start="rules", thresholds=[0.0, 1.0], verifier="consistency", samples=2)
    request = chat("Prove that there are infinitely many primes.")
    assert (await router.complete(request)).text == "m"
    assert backends["small"].requests == []  # the rules sent it past the cheapest tier
    decision = router.decision_for(request.trace.request_id)
    assert decision is not None and decision.tried == ["balanced"]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"verifier": "agreement"}, "needs peer"),
        ({"verifier": "agreement", "peer": "nope"}, "unknown tier 'nope'"),
        ({"verifier": "consistency", "samples": 1}, "from 2 to 16"),
        ({"verifier": "consistency", "samples": True}, "from 2 to 16"),
        ({"start": "learned"}, "needs model_file"),
        ({"start": "somewhere"}, "must be one of first, rules, learned"),
    ],
)
def test_bad_verifier_settings_name_the_key(
    tiers: list[dict[str, Any]], spec: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_routing(make_config({"tiers": tiers, "routers": [{"name": "c", "policy": "cascade", **spec}]}))
