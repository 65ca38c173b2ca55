"""The values that flow through every layer: a request, a response, a chunk.

Messages, tools and the response body keep OpenAI's JSON shape (plain dicts):
it is the lingua franca every provider translates from and to, and keeping it
means a proxied request is not re-encoded field by field on the hot path.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]
Chunk = dict[str, Any]


class RawEvents:
    """Whole SSE events of an OpenAI-compatible upstream, forwarded as its own bytes.

    What a provider may yield in place of parsed chunks when the request allows
    it (:attr:`ChatRequest.raw_stream`): ``data`` is one or more complete
    ``data: {...}\n\n`` events, each chunk's id already the request's, with no
    usage-only event and no ``[DONE]`` (the stream still ends with a parsed
    usage chunk). ``chars`` counts the generated text in them, for the usage of
    a stream cut short.
    """

    __slots__ = ("data", "chars")

    def __init__(self, data: bytes, chars: int) -> None:
        self.data = data
        self.chars = chars

    def __repr__(self) -> str:
        return f"RawEvents({self.data!r})"


# What a stream yields: parsed chunks, or (only to a caller that set raw_stream) raw events.
Piece = Chunk | RawEvents


def parsed(piece: Piece) -> Chunk:
    """A piece of a stream whose request has ``raw_stream`` off: always a chunk."""
    if isinstance(piece, RawEvents):
        raise TypeError("a stream sent raw events to a request that did not allow them")
    return piece


# Generation parameters thrifty understands; anything else a client sends is
# kept in ``ChatRequest.extra`` and passed through to providers that accept it.
PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "n",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "user",
)


# Response ids: a random per-process prefix and a counter. Unique across processes
# and restarts like a UUID, at a fraction of uuid4's cost on the hot path.
_ID_PREFIX = "chatcmpl-" + os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens read from the upstream's prompt cache
    cache_write_tokens: int = 0  # prompt tokens written to it (Anthropic reports these)
    reasoning_tokens: int = 0  # completion tokens spent thinking (OpenAI's reasoning models)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens or self.cache_write_tokens:
            details = out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
            if self.cache_write_tokens:
                details["cache_write_tokens"] = self.cache_write_tokens
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Usage:
        if not data:
            return cls()
        details = data.get("prompt_tokens_details") or {}
        output = data.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=int(data.get("prompt_tokens") or 0),
            completion_tokens=int(data.get("completion_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
            cache_write_tokens=int(details.get("cache_write_tokens") or 0),
            reasoning_tokens=int(output.get("reasoning_tokens") or 0),
        )


@dataclass(frozen=True, slots=True)
class CacheOutcome:
    """What the response cache did for a request."""

    result: str  # "hit" or "miss"
    level: str = ""  # on a hit: "exact" or "semantic"
    similarity: float | None = None  # on a semantic hit
    skipped: str = ""  # why the cache was not read: "sampled", "no-cache"
    coalesced: bool = False  # answered by an identical request already in flight
    key: str = ""  # the exact cache key looked up (kept in the ledger to warm the cache)

    @property
    def hit(self) -> bool:
        return self.result == "hit"


CACHE_MISS = CacheOutcome("miss")
CACHE_HIT_EXACT = CacheOutcome("hit", "exact")
CACHE_SKIPPED_SAMPLED = CacheOutcome("miss", skipped="sampled")
CACHE_SKIPPED_NO_CACHE = CacheOutcome("miss", skipped="no-cache")
CACHE_COALESCED = CacheOutcome("hit", "exact", coalesced=True)


@dataclass(frozen=True, slots=True)
class CompressOutcome:
    """What the compress layer did to a request's prompt (tokens are its own count)."""

    mode: str
    tokens_before: int
    tokens_after: int
    removed: tuple[tuple[str, int], ...] = ()  # (what, how many): ("duplicate", 2), ("summarised", 12)
    skipped: str = ""  # why the prompt went unchanged: "short", "no-gain"

    @property
    def saved(self) -> int:
        """Prompt tokens the compressor took out (its own count)."""
        return 0 if self.skipped else max(0, self.tokens_before - self.tokens_after)

    def header(self) -> str:
        """The ``x-thrifty-compress`` header value: ``balanced 2,140->1,210 tokens duplicate=2``."""
        if self.skipped:
            return f"{self.mode} skipped={self.skipped}"
        parts = [f"{self.mode} {self.tokens_before:,}->{self.tokens_after:,} tokens"]
        parts.extend(f"{what}={n}" for what, n in self.removed)
        return " ".join(parts)


@dataclass(slots=True)
class RouteDecision:
    """The route of one request: the router, its policy, the tier it landed on, and why."""

    router: str
    policy: str
    tier: str
    model: str  # the model group that answered
    score: float | None = None  # rules: complexity; learned: predicted quality; cascade: answer score
    escalations: int = 0
    tried: list[str] = field(default_factory=list)  # cascade: tiers called, in order
    features: dict[str, float] = field(default_factory=dict)
    fallback: str | None = None  # why the router fell back to its default, if it did
    cost_usd: float = 0.0  # every upstream call the route made: answers, escalated answers, verifiers
    kind: str = ""  # request type, the feedback learner's context
    verdicts: dict[str, bool] = field(default_factory=dict)  # cascade: tier -> its answer accepted

    def header(self) -> str:
        """The ``x-thrifty-route`` header value."""
        parts = [f"policy={self.policy}", f"model={self.tier}"]
        if self.score is not None:
            parts.append(f"score={self.score:.2f}")
        parts.append(f"escalations={self.escalations}")
        if self.fallback:
            parts.append("fallback=1")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the ledger row."""
        return {
            "router": self.router,
            "policy": self.policy,
            "tier": self.tier,
            "model": self.model,
            "score": None if self.score is None else round(self.score, 4),
            "escalations": self.escalations,
            "tried": list(self.tried),
            "features": {k: round(v, 4) for k, v in self.features.items()},
            "fallback": self.fallback,
            "cost_usd": self.cost_usd,
            "kind": self.kind,
            "verdicts": dict(self.verdicts),
        }


@dataclass(slots=True)
class UpstreamCall:
    """An upstream call made for a request besides the answer it was sent.

    ``purpose`` says why: ``verify`` (a cascade verifier's extra sample, peer
    answer or judge grade) or ``escalated`` (a cascade tier's answer that was
    not served). The observer writes one ledger row per call, linked to the
    request, priced by its deployment like any answer.
    """

    purpose: str
    request_id: str  # the call's own id: the request's id and a suffix
    model: str  # the model group called
    deployment: str
    usage: Usage
    latency_s: float = 0.0
    tier: str = ""  # the cascade tier it verified or answered for
    cache_hit: bool = False  # answered by the response cache: nothing paid
    verdict: bool | None = None  # escalated: the verifier's verdict on this answer (False)


@dataclass(frozen=True, slots=True)
class FallbackTaken:
    """A fallback chain sent the request on from ``source`` to ``target`` after ``reason``."""

    source: str
    target: str
    reason: str  # the error class that made it fall back


@dataclass(frozen=True, slots=True)
class VariantChoice:
    """What the learning layer did to a request: the prompt variant and any knowledge used."""

    variant: str  # the rewrite operator applied ("baseline": none)
    context: str = ""  # the cluster of similar requests it was chosen for
    source: str = ""  # "user" (the user's own override), "experiment", "promoted", "" (baseline)
    knowledge: str = ""  # "hit" (answered from the knowledge base), "context" (given as an exemplar)

    def header(self) -> str:
        """The ``x-thrifty-variant`` header value."""
        parts = [self.variant]
        if self.context:
            parts.append(f"context={self.context}")
        if self.source:
            parts.append(f"source={self.source}")
        return " ".join(parts)


@dataclass(slots=True)
class Trace:
    """What the layers learn about one request on its way through.

    Each layer sets the typed fields it knows (the provider ``deployment`` and
    ``usage_estimated``, the balancer ``attempts``, ``hedged`` and
    ``retry_budget_exhausted``, the cache ``cache``, the compressor ``compress``, the router ``route`` and
    ``route_fallback``, a fallback chain ``fallback``, the learning layer
    ``variant``); the observer reads them
    as they are, and :func:`trace_notes` renders them once into the
    ``x-thrifty-*`` header values and the ledger's notes. ``extra`` holds
    free-form notes of layers outside the serving stack (the agent), shown as
    headers only. ``upstream_s`` accumulates time spent waiting on upstreams
    so the gateway's own overhead is ``total - upstream_s``.
    """

    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    deployment: str = ""
    upstream_s: float = 0.0
    ttft_s: float | None = None
    attempts: int = 0
    tenant: str = ""
    api_key: str = ""
    key_id: str = ""  # the caller's public key id: the ledger's and the stores' owner
    user: str = ""  # the end user the client named in the body's ``user`` field
    principal: Any = None  # a virtual key's tenancy.Principal: budgets, limits, team
    ticket: Any = None  # what tenancy reserved for this request, settled when it ends
    cache: CacheOutcome | None = None
    route: RouteDecision | None = None
    route_fallback: str = ""  # why the router fell back to its default tier
    fallback: FallbackTaken | None = None
    hedged: str = ""  # the deployment a hedged second attempt went to
    retry_budget_exhausted: bool = False
    usage_estimated: bool = False  # the upstream reported no usage; thrifty counted it
    compress: CompressOutcome | None = None  # what the compress layer removed from the prompt
    variant: VariantChoice | None = None  # the learning layer's prompt variant and knowledge use
    extra: dict[str, str] = field(default_factory=dict)
    calls: list[UpstreamCall] = field(default_factory=list)  # upstream calls besides the answer

    def note(self, key: str, value: str) -> None:
        """A free-form note shown as ``x-thrifty-<key>`` (never read back by thrifty)."""
        self.extra[key] = value

    @property
    def escalations(self) -> int:
        return self.route.escalations if self.route is not None else 0

    @property
    def annotations(self) -> dict[str, str]:
        """The notes as header values (``x-thrifty-<key>``), see :func:`trace_notes`."""
        return trace_notes(self)


def trace_notes(trace: Trace) -> dict[str, str]:
    """The one rendering of a trace's typed notes, as ``x-thrifty-<key>`` header values."""
    out: dict[str, str] = {}
    if trace.cache is not None:
        out.update(_cache_notes(trace.cache))
    if trace.route_fallback:
        out["route-fallback"] = trace.route_fallback
    if trace.route is not None:
        out["route"] = trace.route.header()
    fallback = trace.fallback
    if fallback is not None:
        out["fallback"] = f"{fallback.source}->{fallback.target}"
        out["fallback_reason"] = fallback.reason
    if trace.retry_budget_exhausted:
        out["retry_budget"] = "exhausted"
    if trace.hedged:
        out["hedged"] = trace.hedged
    if trace.usage_estimated:
        out["usage"] = "estimated"
    if trace.compress is not None:
        out["compress"] = trace.compress.header()
    if trace.variant is not None:
        out["variant"] = trace.variant.header()
        if trace.variant.knowledge:
            out["knowledge"] = trace.variant.knowledge
    if trace.extra:
        out.update(trace.extra)
    return out


def _cache_notes(cache: CacheOutcome) -> dict[str, str]:
    out = {"cache": f"hit-{cache.level}" if cache.result == "hit" else cache.result}
    if cache.skipped:
        out["cache-skip"] = cache.skipped
    if cache.similarity is not None:
        out["cache-similarity"] = f"{cache.similarity:.2f}"
    if cache.coalesced:
        out["cache-coalesced"] = "1"
    return out


def response_headers(trace: Trace, model: str, overhead_s: float) -> dict[str, str]:
    """The ``x-thrifty-*`` headers of a response: who answered, thrifty's overhead, the notes."""
    headers = {
        "x-thrifty-model": trace.deployment or model,
        "x-thrifty-overhead-ms": f"{overhead_s * 1000:.3f}",
        "x-thrifty-request-id": trace.request_id,
    }
    for key, value in trace_notes(trace).items():
        headers["x-thrifty-" + key] = value
    if trace.ticket is not None:
        headers.update(trace.ticket.headers)  # x-ratelimit-*, as OpenAI sends them
    return headers


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # thrifty's own per-request options (``thrifty`` body field / x-thrifty-* headers)
    options: dict[str, Any] = field(default_factory=dict)
    trace: Trace = field(default_factory=Trace)
    # The caller forwards upstream SSE bytes as they are (``RawEvents``): the SSE chat
    # route sets it; a layer that must read a stream's chunks clears it before it calls
    # its inner backend, and the request's stream is parsed all the way down.
    raw_stream: bool = False
    # The client's body in an API some upstreams speak themselves (``/v1/responses``), for a
    # deployment with ``options.responses: native``; every other backend answers ``messages``.
    native: dict[str, Any] | None = None

    def with_model(self, model: str) -> ChatRequest:
        """The same request aimed at another model; shares the trace."""
        return ChatRequest(
            model=model,
            messages=self.messages,
            params=self.params,
            stream=self.stream,
            include_usage=self.include_usage,
            extra=self.extra,
            options=self.options,
            trace=self.trace,
            raw_stream=self.raw_stream,
            native=self.native,
        )


@dataclass(slots=True)
class ChatResponse:
    """A finished chat completion in OpenAI's JSON shape, plus its usage."""

    body: dict[str, Any]
    usage: Usage = field(default_factory=Usage)
    native: dict[str, Any] | None = None  # the upstream's own answer to ``ChatRequest.native``

    @property
    def text(self) -> str:
        choices = self.body.get("choices") or [{}]
        content = (choices[0].get("message") or {}).get("content")
        return content if isinstance(content, str) else ""

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        choices = self.body.get("choices") or [{}]
        return list((choices[0].get("message") or {}).get("tool_calls") or [])

    @property
    def finish_reason(self) -> str | None:
        choices = self.body.get("choices") or [{}]
        reason = choices[0].get("finish_reason")
        return reason if isinstance(reason, str) else None


def completion_body(
    *,
    id: str,
    model: str,
    content: str | None,
    finish_reason: str = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
    usage: Usage | None = None,
    logprobs: Any = None,
) -> dict[str, Any]:
    """Build an OpenAI ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason,
        "logprobs": logprobs,
    }
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }
    if usage is not None:
        body["usage"] = usage.to_json()
    return body


def chunk_body(
    *,
    id: str,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    created: int | None = None,
) -> Chunk:
    """Build an OpenAI ``chat.completion.chunk`` object with one choice."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def usage_chunk(*, id: str, model: str, usage: Usage) -> Chunk:
    """The final chunk of a stream with ``include_usage``: no choices, only usage."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage.to_json(),
    }


def message_text(message: Message) -> str:
    """The text of a message whose content is a string or a list of parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "".join(parts)
