"""OpenTelemetry spans for finished requests, only when ``opentelemetry`` is installed.

Spans are made after the fact by the writer thread, with the request's real
start and end times and GenAI semantic-convention attributes, so tracing adds
nothing to the hot path. They are root spans: the observer sees a finished
request, not the caller's context. Configure an exporter the usual way
(``opentelemetry-sdk`` / ``opentelemetry-instrument``); without a configured
provider the API's no-op tracer drops them.
"""

from __future__ import annotations

import time
from typing import Any

from .events import RequestEvent


class Spans:
    def __init__(self, tracer: Any, *, only_when_configured: bool = False) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.tracer = tracer
        self.kind = SpanKind.CLIENT
        self.error = Status(StatusCode.ERROR)
        self._provider = trace.get_tracer_provider
        self._proxy = trace.ProxyTracerProvider
        self._gated = only_when_configured
        self._checked = -1.0
        self._live = True

    def live(self) -> bool:
        """False while no tracer provider is configured (re-checked every second)."""
        if not self._gated:
            return True
        now = time.monotonic()
        if now - self._checked > 1.0:
            self._checked = now
            self._live = not isinstance(self._provider(), self._proxy)
        return self._live

    def emit(self, ev: RequestEvent, cost: float, tier: str, cache: str) -> None:
        if not self.live():
            return  # spans would be dropped anyway
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": ev.model,
            "gen_ai.response.id": ev.request_id,
            "gen_ai.usage.input_tokens": ev.prompt_tokens,
            "gen_ai.usage.output_tokens": ev.completion_tokens,
            "http.response.status_code": ev.status,
            "thrifty.deployment": ev.deployment,
            "thrifty.cost_usd": cost,
            "thrifty.overhead_s": ev.overhead_s,
            "thrifty.attempts": ev.attempts,
            "thrifty.stream": ev.stream,
        }
        if ev.deployment:
            attributes["gen_ai.response.model"] = ev.deployment
        if tier:
            attributes["thrifty.route.tier"] = tier
        if cache:
            attributes["thrifty.cache"] = cache
        if ev.ttft_s is not None:
            attributes["thrifty.ttft_s"] = ev.ttft_s
        if ev.error_type:
            attributes["error.type"] = ev.error_type
        span = self.tracer.start_span(
            f"chat {ev.model}",
            kind=self.kind,
            attributes=attributes,
            start_time=int((ev.ts - ev.latency_s) * 1e9),
        )
        if ev.status >= 400:
            span.set_status(self.error)
        span.end(end_time=int(ev.ts * 1e9))


def default_spans(enabled: bool = True) -> Spans | None:
    """Spans through the global tracer, or None when off or not installed."""
    if not enabled:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return Spans(trace.get_tracer("thrifty"), only_when_configured=True)
