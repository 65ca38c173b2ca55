"""The typed trace and the one rendering of it into ``x-thrifty-*`` headers."""

from __future__ import annotations

from thrifty.types import (
    CACHE_COALESCED,
    CACHE_SKIPPED_SAMPLED,
    CacheOutcome,
    FallbackTaken,
    RouteDecision,
    Trace,
    response_headers,
)


def test_every_typed_field_renders_to_the_header_clients_already_read() -> None:
    trace = Trace(request_id="chatcmpl-1", deployment="fast/openai/gpt-4o-mini")
    trace.cache = CacheOutcome("hit", "semantic", similarity=0.934)
    trace.route_fallback = "learned policy unavailable: no file"
    trace.route = RouteDecision(
        router="auto",
        policy="learned",
        tier="fast",
        model="small",
        score=0.312,
        escalations=1,
        fallback="learned policy unavailable: no file",
    )
    trace.fallback = FallbackTaken("small", "large", "UpstreamTimeout")
    trace.hedged = "fast/openai/b"
    trace.retry_budget_exhausted = True
    trace.usage_estimated = True
    trace.note("agent", "planner")
    assert response_headers(trace, "auto", 0.0012345) == {
        "x-thrifty-model": "fast/openai/gpt-4o-mini",
        "x-thrifty-overhead-ms": "1.234",
        "x-thrifty-request-id": "chatcmpl-1",
        "x-thrifty-cache": "hit-semantic",
        "x-thrifty-cache-similarity": "0.93",
        "x-thrifty-route-fallback": "learned policy unavailable: no file",
        "x-thrifty-route": "policy=learned model=fast score=0.31 escalations=1 fallback=1",
        "x-thrifty-fallback": "small->large",
        "x-thrifty-fallback_reason": "UpstreamTimeout",
        "x-thrifty-hedged": "fast/openai/b",
        "x-thrifty-retry_budget": "exhausted",
        "x-thrifty-usage": "estimated",
        "x-thrifty-agent": "planner",
    }
    assert trace.escalations == 1


def test_a_bare_trace_has_only_the_three_fixed_headers_and_skips_render_as_before() -> None:
    trace = Trace(request_id="chatcmpl-2")
    assert response_headers(trace, "m", 0.0) == {
        "x-thrifty-model": "m",
        "x-thrifty-overhead-ms": "0.000",
        "x-thrifty-request-id": "chatcmpl-2",
    }
    trace.cache = CACHE_SKIPPED_SAMPLED
    assert trace.annotations == {"cache": "miss", "cache-skip": "sampled"}
    trace.cache = CACHE_COALESCED
    assert trace.annotations == {"cache": "hit-exact", "cache-coalesced": "1"}
