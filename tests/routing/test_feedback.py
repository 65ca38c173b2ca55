from __future__ import annotations

from typing import Any

from thrifty.backend import Backend
from thrifty.routing import Router, build_routers
from thrifty.routing.feedback import FeedbackLearner
from thrifty.routing.settings import FeedbackSettings
from thrifty.testing import FakeBackend, chat

from .conftest import make_config

TIERS = ["fast", "balanced", "powerful"]


def test_without_evidence_the_base_choice_stands() -> None:
    learner = FeedbackLearner(FeedbackSettings(enabled=True))
    assert [learner.start("k", TIERS, i) for i in range(3)] == [0, 1, 2]


def test_good_ratings_move_a_request_type_to_a_cheaper_tier() -> None:
    learner = FeedbackLearner(FeedbackSettings(enabled=True))
    for _ in range(5):
        learner.record("code/2", "fast", 1.0)
    assert learner.start("code/2", TIERS, 2) == 0
    assert learner.start("other/1", TIERS, 2) == 2  # other request types are untouched


def test_bad_outcomes_push_a_request_type_up() -> None:
    learner = FeedbackLearner(FeedbackSettings(enabled=True))
    for _ in range(3):
        learner.record("k", "fast", 0.0)
    assert learner.start("k", TIERS, 0) == 1


def test_ratings_apply_to_the_tier_that_served_the_request() -> None:
    learner = FeedbackLearner(FeedbackSettings(enabled=True))
    learner.remember("req-1", "k", "fast")
    assert learner.rate("req-1", 1)
    assert not learner.rate("unknown", 5)
    assert learner.snapshot() == {"k": {"fast": 0.0}}


async def test_feedback_through_the_router_moves_where_requests_start(tiers: list[dict[str, Any]]) -> None:
    backends = {n: FakeBackend(f"from {n}", name=n) for n in ("small", "medium", "large")}
    groups: dict[str, Backend] = dict(backends)
    router = build_routers(make_config({"tiers": tiers, "feedback": True}), groups)["thrifty/auto"]
    assert isinstance(router, Router)
    prompt = "Translate 'thank you' to German."
    for _ in range(4):
        request = chat(prompt)
        await router.complete(request)
        router.on_feedback(request.trace.request_id, 1)  # the fast tier keeps disappointing
    later = chat(prompt)
    assert (await router.complete(later)).text != "from small"
    assert router.status()["feedback"] == 4


async def test_feedback_off_by_default_keeps_decisions_fixed(tiers: list[dict[str, Any]]) -> None:
    backends = {n: FakeBackend(f"from {n}", name=n) for n in ("small", "medium", "large")}
    groups: dict[str, Backend] = dict(backends)
    router = build_routers(make_config({"tiers": tiers}), groups)["thrifty/auto"]
    assert isinstance(router, Router)
    for _ in range(4):
        request = chat("Translate 'thank you' to German.")
        await router.complete(request)
        router.on_feedback(request.trace.request_id, 1)
    assert (await router.complete(chat("Translate 'thank you' to German."))).text == "from small"


async def test_a_rating_counts_once_even_with_several_routers(tiers: list[dict[str, Any]]) -> None:
    backends = {n: FakeBackend(f"from {n}", name=n) for n in ("small", "medium", "large")}
    groups: dict[str, Backend] = dict(backends)
    routing = {
        "tiers": tiers,
        "feedback": True,
        "routers": [{"name": "a", "policy": "rules"}, {"name": "b", "policy": "rules"}],
    }
    routers = build_routers(make_config(routing), groups)
    a, b = routers["a"], routers["b"]
    assert isinstance(a, Router) and isinstance(b, Router)
    request = chat("Translate 'thank you' to German.")
    await a.complete(request)
    for router in (a, b):  # the feedback API tells every router
        router.on_feedback(request.trace.request_id, 1)
    assert a.status()["feedback"] == 1 and b.status()["feedback"] == 0
    assert a.learner is not None
    assert a.learner.events == 1
