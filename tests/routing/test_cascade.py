from __future__ import annotations

from typing import Any

from thrifty.backend import Backend
from thrifty.errors import UpstreamTimeout
from thrifty.routing import Router, build_routers
from thrifty.testing import FakeBackend, chat
from thrifty.types import ChatRequest, ChatResponse, Usage, completion_body, parsed

from .conftest import make_config


def confident(text: str, logprob: float, name: str) -> FakeBackend:
    """A backend that answers with per-token log-probabilities when asked for them."""

    def answer(request: ChatRequest) -> ChatResponse:
        lp = None
        if request.params.get("logprobs"):
            lp = {"content": [{"token": w, "logprob": logprob} for w in text.split()]}
        usage = Usage(prompt_tokens=10, completion_tokens=len(text.split()))
        body = completion_body(
            id=request.trace.request_id, model=name, content=text, usage=usage, logprobs=lp
        )
        return ChatResponse(body=body, usage=usage)

    return FakeBackend(answer, name=name)


def cascade(tiers: list[dict[str, Any]], backends: dict[str, FakeBackend], **spec: Any) -> Router:
    groups: dict[str, Backend] = dict(backends)
    router = build_routers(
        make_config({"tiers": tiers, "routers": [{"name": "c", "policy": "cascade", **spec}]}), groups
    )["c"]
    assert isinstance(router, Router)
    return router


async def test_confident_cheap_answer_is_kept(tiers: list[dict[str, Any]]) -> None:
    backends = {
        "small": confident("Paris", -0.05, "small"),
        "medium": FakeBackend("m", name="medium"),
        "large": FakeBackend("l", name="large"),
    }
    router = cascade(tiers, backends, accept=0.8)
    request = chat("Capital of France?")
    response = await router.complete(request)
    assert response.text == "Paris"
    assert backends["small"].requests[0].params["logprobs"] is True  # asked for, to score
    assert response.body["choices"][0]["logprobs"] is None  # but not shown to a client who did not ask
    assert request.trace.annotations["route"] == "policy=cascade model=fast score=0.95 escalations=0"
    assert backends["medium"].requests == [] and backends["large"].requests == []


async def test_unsure_answers_escalate_until_accepted(tiers: list[dict[str, Any]]) -> None:
    backends = {
        "small": confident("maybe", -2.0, "small"),
        "medium": confident("sure", -0.01, "medium"),
        "large": FakeBackend("l", name="large"),
    }
    router = cascade(tiers, backends, accept=0.5)
    request = chat("hard one")
    response = await router.complete(request)
    assert response.text == "sure"
    assert request.trace.annotations["route"] == "policy=cascade model=balanced score=0.99 escalations=1"
    decision = router.decision_for(request.trace.request_id)
    assert decision is not None and decision.tried == ["fast", "balanced"]
    assert decision.cost_usd > 0
    assert router.status()["escalations"] == 1


async def test_last_tier_answers_without_being_scored_and_failures_escalate(
    tiers: list[dict[str, Any]],
) -> None:
    backends = {
        "small": FakeBackend([UpstreamTimeout("slow")], name="small"),
        "medium": confident("meh", -3.0, "medium"),
        "large": FakeBackend("final", name="large"),
    }
    router = cascade(tiers, backends)
    request = chat("q")
    assert (await router.complete(request)).text == "final"
    assert "logprobs" not in backends["large"].requests[0].params
    assert "escalations=2" in request.trace.annotations["route"]


async def test_budget_stops_escalation_and_keeps_best_answer(tiers: list[dict[str, Any]]) -> None:
    backends = {
        "small": confident("cheap guess", -2.0, "small"),
        "medium": confident("x", -2.0, "medium"),
        "large": FakeBackend("expensive", name="large"),
    }
    # the first call costs ~1.4e-6 USD; a balanced call would cost ~1.4e-5: over budget
    router = cascade(tiers, backends, accept=0.9, budget_usd=0.000005)
    assert (await router.complete(chat("q"))).text == "cheap guess"
    assert backends["medium"].requests == []


async def test_max_escalations_caps_the_climb(tiers: list[dict[str, Any]]) -> None:
    backends = {
        "small": confident("a", -5.0, "small"),
        "medium": confident("b", -5.0, "medium"),
        "large": FakeBackend("c", name="large"),
    }
    router = cascade(tiers, backends, max_escalations=1)
    assert (await router.complete(chat("q"))).text == "b"  # medium is the last allowed, answers unscored
    assert backends["large"].requests == []


async def test_format_verifier_escalates_empty_answers(tiers: list[dict[str, Any]]) -> None:
    backends = {
        "small": FakeBackend([" "], name="small"),
        "medium": FakeBackend("real answer", name="medium"),
        "large": FakeBackend("l", name="large"),
    }
    router = cascade(tiers, backends, verifier="format")
    assert (await router.complete(chat("q"))).text == "real answer"


async def test_judge_verifier_grades_the_cheap_answer(tiers: list[dict[str, Any]]) -> None:
    judge = FakeBackend(lambda r: "9" if "Paris" in r.messages[0]["content"] else "2", name="large")
    backends = {
        "small": FakeBackend("Paris", name="small"),
        "medium": FakeBackend("m", name="medium"),
        "large": judge,
    }
    router = cascade(tiers, backends, verifier="judge", judge="powerful", accept=0.7)
    request = chat("Capital of France?")
    assert (await router.complete(request)).text == "Paris"
    assert "score=0.90" in request.trace.annotations["route"]


async def test_streaming_client_sees_only_the_accepted_answer(tiers: list[dict[str, Any]]) -> None:
    # the small tier's stream has no logprobs and an empty answer: the format check rejects it
    backends = {
        "small": FakeBackend([""], name="small"),
        "medium": FakeBackend("good answer here", name="medium"),
        "large": FakeBackend("l", name="large"),
    }
    router = cascade(tiers, backends)
    request = chat(
        "q",
    )
    request.stream = True
    chunks = [parsed(c) async for c in router.stream(request)]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "good answer here"
    assert request.trace.annotations["route"].startswith("policy=cascade model=balanced")
    assert sum(1 for c in chunks if c.get("usage")) == 1  # one usage chunk, from the accepted tier


async def test_streaming_accepts_a_good_cheap_answer_from_the_buffer(tiers: list[dict[str, Any]]) -> None:
    backends = {
        "small": FakeBackend("fine answer", name="small"),
        "medium": FakeBackend("m", name="medium"),
        "large": FakeBackend("l", name="large"),
    }
    router = cascade(tiers, backends)
    chunks = [parsed(c) async for c in router.stream(chat("q"))]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "fine answer"
    assert backends["medium"].requests == []
