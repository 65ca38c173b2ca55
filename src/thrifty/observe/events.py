"""The one record the gateway hands the observer per finished request."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..types import CacheOutcome, CompressOutcome, FallbackTaken, Message, RouteDecision, UpstreamCall


@dataclass(slots=True)
class RequestEvent:
    """What happened to one request, as the server saw it when it answered."""

    request_id: str
    ts: float  # unix time the request finished
    model: str  # the model name the client asked for
    deployment: str  # the deployment that answered (trace.deployment)
    stream: bool
    status: int  # HTTP status sent to the client
    error_type: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_s: float
    ttft_s: float | None
    overhead_s: float
    attempts: int
    api_key: str  # a short hash of the key (or a virtual key's id), never the key itself
    tenant: str
    team: str = ""  # a virtual key's team
    user: str = ""  # the end user named in the request body
    cache: CacheOutcome | None = None  # what the response cache did (trace.cache)
    route: RouteDecision | None = None  # the router's decision (trace.route)
    fallback: FallbackTaken | None = None  # a fallback chain's hop (trace.fallback)
    compress: CompressOutcome | None = None  # what the compressor took out of the prompt (trace.compress)
    annotations: dict[str, str] = field(default_factory=dict)  # the trace's notes as rendered for headers
    cache_write_tokens: int = 0  # prompt tokens written to the upstream's prompt cache
    reasoning_tokens: int = 0  # completion tokens spent reasoning
    calls: list[UpstreamCall] = field(default_factory=list)  # upstream calls besides the answer (trace.calls)
    # the request's messages, only when the prompt log is on (``ledger.log_prompts``): the
    # writer thread renders the text the router reads from them, off the request path
    messages: list[Message] | None = None
