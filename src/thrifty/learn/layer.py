"""The learning layer: a backend wrapper that improves a model group from its users' signals.

Per request (unless it opts out with ``thrifty.learn: false``):

1. embed the last user turn (the stack's MiniLM, off the event loop);
2. note an implicit signal when the same user regenerates or rephrases within the window;
3. place the request in a context (a cluster of similar requests of the same owner);
4. answer from the knowledge base when a validated good answer fits (``knowledge: hit``),
   or give the best one to the model as an exemplar (``knowledge: context``);
5. pick the prompt variant: the user's own override, else the context's A/B test;
6. call the model with the variant applied, and remember what was served for the rating.

Per rating (:meth:`LearningLayer.on_signal`): classify the comment into reasons,
count the outcome for the variant and context, propose the operator the reasons
call for (and give it to the rating user at once), admit a good or corrected
answer to the knowledge base, and count a bad rating against what it came from.

Every change to what the layer knows is an event folded by :meth:`LearningLayer.fold`
through a journal (:mod:`.journal`): at once in one process, or in Redis's
order on every replica when ``learn.redis_url`` is set.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..backend import Backend, Wrapper
from ..types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    Piece,
    Usage,
    VariantChoice,
    chunk_body,
    completion_body,
    parsed,
    usage_chunk,
)
from .contexts import Contexts
from .experiments import Experiment, reward_of
from .journal import Event, Journal, LocalJournal, RedisJournal
from .knowledge import KnowledgeBase, Match
from .operators import (
    BASELINE,
    OPERATORS,
    applicable,
    exemplar_operator,
    last_user_text,
    operator_for,
    opted_out,
)
from .reasons import ReasonClassifier
from .signals import Ask, Implicit, RecentAsks

if TYPE_CHECKING:
    from ..observe.feedback import Signal
    from .reasons import Embed
    from .settings import LearnSettings

log = logging.getLogger("thrifty.learn")
MAX_SERVED = 10_000  # requests remembered for a later rating
MAX_OVERRIDES = 50_000  # per-user variants kept, the least recently set dropped first
MAX_KEPT_ANSWER = 16_000  # characters; a longer answer is not kept for the knowledge base
KNOWLEDGE = "knowledge"  # the variant of an answer served from the knowledge base: not in any A/B test


@dataclass(slots=True)
class Served:
    """What the layer did for one request, kept for its rating."""

    owner: str
    user: str
    context: str
    variant: str
    question: str
    vector: Any
    answer: str = ""
    knowledge_id: str = ""  # the entry answered from or shown as an exemplar
    source: str = ""  # "user": the user's own override, kept out of the context's A/B test


@dataclass(slots=True)
class Plan:
    request: ChatRequest
    served: Served | None = None
    hit: Match | None = None


class LearningLayer(Wrapper):
    def __init__(
        self,
        inner: Backend,
        group: str,
        settings: LearnSettings,
        embed: Embed,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(inner)
        self.group = group
        self.settings = settings
        self.embed = embed
        self.clock = clock
        self.classifier = ReasonClassifier(embed)
        self.contexts = Contexts(settings.context_similarity, settings.max_contexts)
        self.recent = RecentAsks(settings.window_s, settings.duplicate_similarity)
        self.journal: Journal = (
            RedisJournal(settings.redis_url, f"thrifty:learn:{group}:", self.fold)
            if settings.redis_url
            else LocalJournal(self.fold)
        )
        self.knowledge = KnowledgeBase(settings, clock, persist=not settings.redis_url)
        self.experiments: dict[tuple[str, str], Experiment] = {}
        self.overrides: OrderedDict[tuple[str, str, str], str] = (
            OrderedDict()
        )  # (owner, user, context) -> variant
        self._served: OrderedDict[str, Served] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self.counts = {
            "requests": 0,
            "signals": 0,
            "implicit": 0,
            "knowledge_hits": 0,
            "promoted": 0,
            "rolled_back": 0,
        }

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.knowledge.open)
        await self.refresh()
        self._refresher = asyncio.ensure_future(self._refresh_loop())
        await self.inner.start()

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        await self.journal.aclose()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.knowledge.close)
        await self.inner.aclose()

    async def refresh(self) -> None:
        """Read what other instances (and this one) wrote to the shared file or stream; prune."""
        self.knowledge.apply(await asyncio.to_thread(self.knowledge.changes))
        await self.journal.catch_up()
        for write in self.knowledge.prune():
            self._background(write)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_s)
            try:
                await self.refresh()
            except Exception:  # the loop must outlive one bad read
                log.exception("knowledge base refresh failed")

    def _background(self, write: Callable[[], None]) -> None:
        task = asyncio.ensure_future(asyncio.to_thread(write))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def degraded(self) -> list[str]:
        return self.knowledge.degraded() + self.journal.degraded()

    def status(self) -> dict[str, Any]:
        return {
            **self.counts,
            "knowledge_entries": self.knowledge.size(),
            "experiments": len(self.experiments),
            "running": sum(1 for e in self.experiments.values() if e.candidate is not None),
        }

    def report(self, owner: str | None = None) -> dict[str, Any]:
        """Experiments, their evidence and what was promoted (``owner``: only that key's)."""
        return {
            "group": self.group,
            "experiments": [
                e.to_json() | {"owner": o}
                for (o, _), e in self.experiments.items()
                if owner is None or o == owner
            ],
            "overrides": [
                {"owner": o, "user": u, "context": c, "variant": v}
                for (o, u, c), v in self.overrides.items()
                if owner is None or o == owner
            ],
            "knowledge_entries": self.knowledge.size(owner),
            "shared": "redis" if self.settings.redis_url else "local",
            **({"counts": dict(self.counts)} if owner is None else {}),
        }

    # -- serving ----------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> ChatResponse:
        plan = await self._plan(request)
        if plan.hit is not None:
            if plan.served is not None:
                self._share(request, plan.served)
            return self._hit_response(request, plan.hit)
        response = await self.inner.complete(plan.request)
        if plan.served is not None:
            plan.served.answer = _kept(response.text)
            self._share(request, plan.served)
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        plan = await self._plan(request)
        if plan.hit is not None:
            if plan.served is not None:
                self._share(request, plan.served)
            for chunk in self._hit_chunks(request, plan.hit):
                yield chunk
            return
        if plan.served is None:  # nothing to learn from this answer's text
            async for piece in self.inner.stream(plan.request):
                yield piece
            return
        parts: list[str] = []
        plan.request.raw_stream = False  # the answer's text is remembered: read the chunks
        async for piece in self.inner.stream(plan.request):
            for choice in parsed(piece).get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if isinstance(text, str):
                    parts.append(text)
            yield piece
        plan.served.answer = _kept("".join(parts))
        self._share(request, plan.served)

    async def _plan(self, request: ChatRequest) -> Plan:
        question = last_user_text(request.messages)
        if opted_out(request.options) or not question.strip():
            return Plan(request)
        self.counts["requests"] += 1
        trace = request.trace
        owner, user = trace.key_id, trace.user or str(request.params.get("user") or "")
        vector = (await asyncio.to_thread(self.embed, [question]))[0]
        implicit = self.recent.observe(
            owner, user, Ask(trace.request_id, _fingerprint(request), vector, self.clock())
        )
        if implicit is not None:
            self._implicit(owner, implicit)
        context, new = self.contexts.assign(owner, vector)
        if new and self.settings.redis_url:  # known here already; the other replicas learn of it
            self.journal.post({"t": "context", "owner": owner, "context": context, "vector": _pack(vector)})
        served = Served(owner, user, context, BASELINE, question, vector)
        self._remember(trace.request_id, served)
        match = self.knowledge.lookup(owner, question, vector) if self.settings.knowledge != "off" else None
        if match is not None and self.settings.knowledge == "hit":
            served.knowledge_id, served.answer, served.variant = match.entry.id, match.entry.answer, KNOWLEDGE
            trace.variant = VariantChoice(BASELINE, context, knowledge="hit")
            self.counts["knowledge_hits"] += 1
            return Plan(request, served, hit=match)
        variant, source = self._choose(owner, user, context)
        operator = OPERATORS.get(variant)
        if operator is None or not applicable(request, operator):
            variant, source, messages = BASELINE, "", request.messages
        else:
            messages = operator.apply(request.messages)
        if match is not None:  # knowledge: context -- the good answer as an exemplar
            exemplar = exemplar_operator(match.entry.question, match.entry.answer)
            if applicable(request, exemplar):
                messages = exemplar.apply(messages)
                served.knowledge_id = match.entry.id
        served.variant, served.source = variant, source
        trace.variant = VariantChoice(variant, context, source, "context" if served.knowledge_id else "")
        if messages is request.messages:
            return Plan(request, served)
        return Plan(replace(request, messages=messages), served)

    def _choose(self, owner: str, user: str, context: str) -> tuple[str, str]:
        override = self.overrides.get((owner, user, context)) if user else None
        if override is not None:
            return override, "user"
        experiment = self.experiments.get((owner, context))
        if experiment is None:
            return BASELINE, ""
        return experiment.assign(user or "", self.settings.max_share)

    def _share(self, request: ChatRequest, served: Served) -> None:
        """Keep what was served in the journal too, for a rating another replica receives."""
        if self.settings.redis_url:
            shared = {f: getattr(served, f) for f in Served.__slots__}  # type: ignore[attr-defined]
            self.journal.remember(request.trace.request_id, shared | {"vector": _pack(served.vector)})

    def _remember(self, request_id: str, served: Served) -> None:
        self._served[request_id] = served
        while len(self._served) > MAX_SERVED:
            self._served.popitem(last=False)

    def _hit_response(self, request: ChatRequest, match: Match) -> ChatResponse:
        request.trace.deployment = request.trace.deployment or f"{self.group}/knowledge"
        usage = Usage()
        body = completion_body(
            id=request.trace.request_id, model=self.group, content=match.entry.answer, usage=usage
        )
        return ChatResponse(body=body, usage=usage)

    def _hit_chunks(self, request: ChatRequest, match: Match) -> list[Chunk]:
        request.trace.deployment = request.trace.deployment or f"{self.group}/knowledge"
        rid, model = request.trace.request_id, self.group
        return [
            chunk_body(id=rid, model=model, delta={"role": "assistant", "content": match.entry.answer}),
            chunk_body(id=rid, model=model, delta={}, finish_reason="stop"),
            usage_chunk(id=rid, model=model, usage=Usage()),
        ]

    # -- learning -----------------------------------------------------------------------

    def _implicit(self, owner: str, implicit: Implicit) -> None:
        served = self._served.get(implicit.request_id)
        if served is None or served.owner != owner:
            return
        self.counts["implicit"] += 1
        for event in self._outcome(served, 0.0, self.settings.implicit_weight):
            self.journal.post(event)
        if served.knowledge_id:
            self.journal.post(
                {
                    "t": "contradict",
                    "owner": owner,
                    "entry": served.knowledge_id,
                    "weight": self.settings.implicit_weight,
                }
            )
        self._log(implicit.request_id, served, implicit.kind, None, [], "")

    @staticmethod
    def _outcome(served: Served, reward: float, weight: float) -> list[Event]:
        """The outcome event for ``served`` (none for knowledge hits and users' own variants)."""
        if served.variant == KNOWLEDGE or served.source == "user":
            return []
        return [
            {
                "t": "outcome",
                "owner": served.owner,
                "context": served.context,
                "variant": served.variant,
                "reward": reward,
                "weight": weight,
            }
        ]

    # -- folding events (the only place learned state changes) ------------------------

    def fold(self, event: Event) -> Any:
        """Apply one event to memory; what it decided (a decision, a proposal taken), if anything."""
        kind, owner = event["t"], str(event["owner"])
        if kind == "context":
            return self.contexts.add(owner, str(event["context"]), _unpack(event["vector"]))
        if kind in ("open", "outcome", "propose"):
            return self._fold_experiment(kind, owner, event)
        if kind in ("override", "unset"):
            key = (owner, str(event["user"]), str(event["context"]))
            if kind == "unset":
                if self.overrides.get(key) == event["variant"]:
                    del self.overrides[key]
                return None
            self.overrides[key] = str(event["variant"])
            self.overrides.move_to_end(key)
            while len(self.overrides) > MAX_OVERRIDES:
                self.overrides.popitem(last=False)
            return None
        if kind in ("admit", "contradict"):
            return self._fold_knowledge(kind, owner, event)
        raise ValueError(f"unknown learning event {kind!r}")

    def _fold_experiment(self, kind: str, owner: str, event: Event) -> Any:
        key = (owner, str(event["context"]))
        if kind == "open":
            self.experiments.setdefault(key, Experiment(*key))
            return None
        experiment = self.experiments.get(key)
        if experiment is None:
            return None if kind == "outcome" else False
        if kind == "propose":
            return experiment.propose(str(event["variant"]))
        experiment.record(str(event["variant"]), float(event["reward"]), float(event["weight"]))
        decision = experiment.decide(self.settings.min_samples, self.settings.confidence)
        if decision is not None:
            self.counts[decision] += 1
            log.info("learning %s: %s %s in context %s", self.group, decision, event["variant"], key[1])
        return decision

    def _fold_knowledge(self, kind: str, owner: str, event: Event) -> None:
        kb = self.knowledge
        if kind == "admit":
            write: Callable[[], None] | None = kb.admit(
                owner,
                str(event["question"]),
                str(event["answer"]),
                _unpack(event["vector"]),
                response_id=str(event["response_id"]),
                source=str(event["source"]),
                good=float(event["good"]),
                created=float(event["created"]),
            )[1]
        else:
            write = kb.contradict(
                owner,
                str(event.get("response_id") or ""),
                str(event.get("entry") or ""),
                float(event["weight"]),
            )
        if write is not None:
            self._background(write)

    async def on_signal(self, signal: Signal) -> dict[str, Any] | None:
        """Learn from one rating of a response this layer (or a replica sharing its journal) served."""
        served = self._served.get(signal.response_id)
        if served is None:
            kept = await self.journal.recall(signal.response_id)
            served = _unshare(kept) if kept is not None else None
        if served is None or served.owner != signal.owner:
            return None
        self.counts["signals"] += 1
        user = signal.user or served.user
        reasons = await asyncio.to_thread(self.classifier.classify, signal.comment, signal.rating)
        where = {"owner": served.owner, "context": served.context}
        events: list[Event] = [{"t": "open", **where}, *self._outcome(served, reward_of(signal.rating), 1.0)]
        if signal.rating <= 2 and user:  # the user's own pattern, if it was this, did not work for them
            events.append({"t": "unset", **where, "user": user, "variant": served.variant})
        operator = operator_for(reasons) if signal.rating <= 3 else None
        proposing = operator is not None and operator.name != served.variant
        if operator is not None and proposing:
            if user:
                events.append({"t": "override", **where, "user": user, "variant": operator.name})
            events.append({"t": "propose", **where, "variant": operator.name})
        events += self._knowledge_events(served, signal)
        results = await self.journal.publish(events)
        self._log(signal.response_id, served, "rating", signal.rating, reasons, signal.route or "", user)
        out: dict[str, Any] = {"reasons": reasons, "variant": served.variant, "context": served.context}
        decision = results[1] if len(events) > 1 and events[1]["t"] == "outcome" else None
        proposed = [e["variant"] for e, r in zip(events, results, strict=True) if e["t"] == "propose" and r]
        if proposed:
            out["proposed"] = proposed[0]
        if decision:
            out["decision"] = decision
        return out

    def _knowledge_events(self, served: Served, signal: Signal) -> list[dict[str, Any]]:
        """What a rating teaches the knowledge base, as events."""
        owner, events = served.owner, list[dict[str, Any]]()
        if signal.rating <= 2:
            events.append(
                {
                    "t": "contradict",
                    "owner": owner,
                    "response_id": signal.response_id,
                    "entry": served.knowledge_id,
                    "weight": 1.0,
                }
            )
        elif signal.rating == 3 and served.knowledge_id:  # a reused answer should be better than lukewarm
            events.append({"t": "contradict", "owner": owner, "entry": served.knowledge_id, "weight": 0.5})
        elif signal.rating >= 4 and served.knowledge_id:  # a reused answer rated well again
            entry = self.knowledge.get(owner, served.knowledge_id)
            if entry is not None:
                events.append(
                    _admission(
                        owner, entry.question, entry.answer, entry.vector, entry.response_id, entry.source
                    )
                    | {"created": entry.created}
                )
        elif signal.rating >= 4 and served.answer:
            events.append(
                _admission(owner, served.question, served.answer, served.vector, signal.response_id)
            )
        if signal.corrected_answer:  # the user's own answer counts as validated at once
            events.append(
                _admission(
                    owner,
                    served.question,
                    signal.corrected_answer,
                    served.vector,
                    signal.response_id,
                    "corrected",
                    float(self.settings.min_ratings),
                )
            )
        for event in events:
            event.setdefault("created", self.clock())
        return events

    def _log(
        self,
        response_id: str,
        served: Served,
        kind: str,
        rating: float | None,
        reasons: Sequence[str],
        route: str,
        user: str = "",
    ) -> None:
        values = {
            "ts": self.clock(),
            "response_id": response_id,
            "owner": served.owner,
            "end_user": user or served.user,
            "kind": kind,
            "rating": rating,
            "reasons": json.dumps(list(reasons)),
            "variant": served.variant,
            "context": served.context,
            "route": route,
        }
        self._background(lambda: self.knowledge.log_signal(values))


def _admission(
    owner: str,
    question: str,
    answer: str,
    vector: Any,
    response_id: str,
    source: str = "rated",
    good: float = 1.0,
) -> dict[str, Any]:
    return {
        "t": "admit",
        "owner": owner,
        "question": question,
        "answer": answer,
        "vector": _pack(vector),
        "response_id": response_id,
        "source": source,
        "good": good,
    }


def _pack(vector: Any) -> str:
    """A float32 vector as base64 text, for an event."""
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode()


def _unpack(text: Any) -> Any:
    import numpy as np

    return np.frombuffer(base64.b64decode(str(text)), dtype=np.float32)


def _unshare(kept: dict[str, Any]) -> Served | None:
    """A :class:`Served` another replica kept in the journal."""
    try:
        return Served(**{**kept, "vector": _unpack(kept["vector"])})
    except (KeyError, TypeError, ValueError):
        return None


def _kept(answer: str) -> str:
    return answer if len(answer) <= MAX_KEPT_ANSWER else ""


def _fingerprint(request: ChatRequest) -> str:
    text = json.dumps(request.messages, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
