"""Scoring an answer so the cascade can decide whether to escalate.

A verifier returns a score in [0, 1], or None when it cannot judge (for
example no log-probabilities came back). Built in: token log-probabilities,
format checks, a judge model, self-consistency (more answers from the same
tier, sampled) and agreement with a peer tier; any object with the same
``score`` method plugs in.

The two answer-comparing verifiers reduce each answer to its *key*
(:func:`answer_key`): the last number, a multiple-choice letter, yes/no, or
else its words. Two keys agree when they are equal, or, for free text, when
their word sets overlap by at least half (Jaccard). They fit short-answer
work (arithmetic, classification, multiple choice); on long free text they
rarely agree, so such requests escalate. Their extra calls are paid for: a
cascade with ``samples: 3`` makes two more calls to each tier it tries.

Every call a verifier makes is noted on the request's trace
(:class:`~thrifty.types.UpstreamCall`, purpose ``verify``): the cascade adds
its price to the decision's cost and the observer writes it to the ledger.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any, Protocol

from ..backend import Backend
from ..errors import ThriftyError
from ..types import ChatRequest, ChatResponse, UpstreamCall, message_text


class Verifier(Protocol):
    async def score(self, request: ChatRequest, response: ChatResponse) -> float | None: ...


def logprob_score(body: dict[str, Any]) -> float | None:
    """Geometric-mean token probability of the first choice, if logprobs came back."""
    choices = body.get("choices") or [{}]
    content = (choices[0].get("logprobs") or {}).get("content")
    if not isinstance(content, list) or not content:
        return None
    values = [t.get("logprob") for t in content if isinstance(t, dict)]
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    if not numbers:
        return None
    return math.exp(sum(numbers) / len(numbers))


def format_score(request: ChatRequest, response: ChatResponse) -> float:
    """0 for an empty, truncated or malformed answer; 1 otherwise."""
    text = response.text.strip()
    if not text and not response.tool_calls:
        return 0.0
    if response.finish_reason == "length":
        return 0.0
    fmt = request.params.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        try:
            json.loads(text)
        except ValueError:
            return 0.0
    return 1.0


class LogprobVerifier:
    """Confidence from token log-probabilities; None when the backend sent none."""

    async def score(self, request: ChatRequest, response: ChatResponse) -> float | None:
        return logprob_score(response.body)


class FormatVerifier:
    async def score(self, request: ChatRequest, response: ChatResponse) -> float | None:
        return format_score(request, response)


class AutoVerifier:
    """Format checks first; then log-probabilities when present; else the format verdict."""

    async def score(self, request: ChatRequest, response: ChatResponse) -> float | None:
        fmt = format_score(request, response)
        if fmt == 0.0:
            return 0.0
        lp = logprob_score(response.body)
        return fmt if lp is None else lp


_GRADE = re.compile(r"\b(10|[1-9])\b")
JUDGE_PROMPT = (
    "Rate how well the answer responds to the request, from 1 (wrong or useless) to 10 "
    "(correct and complete). Reply with the number only.\n\nRequest:\n{question}\n\nAnswer:\n{answer}"
)


class JudgeVerifier:
    """Asks a judge model to grade the answer 1-10; the score is grade / 10."""

    def __init__(self, judge: Backend, model: str) -> None:
        self.judge = judge
        self.model = model

    async def score(self, request: ChatRequest, response: ChatResponse) -> float | None:
        question = "\n".join(message_text(m) for m in request.messages if m.get("role") == "user")
        prompt = JUDGE_PROMPT.format(question=question[-4000:], answer=response.text[:4000])
        ask = ChatRequest(
            model=self.model,
            messages=[{"role": "user", "content": prompt}],
            params={"max_tokens": 4, "temperature": 0},
        )
        _inherit(ask, request, "judge")
        started = time.perf_counter()
        try:
            graded = await self.judge.complete(ask)
        except ThriftyError:
            return None
        note_call(request, ask, graded, started)
        found = _GRADE.search(graded.text)
        return None if found is None else int(found.group(1)) / 10.0


_FINAL = re.compile(r"(?:final answer|the answer is|answer\s*:)\s*(.+)", re.IGNORECASE | re.DOTALL)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_CHOICE = re.compile(r"^\(?([a-e])\)?(?:[.):\s]|$)")
_WORD = re.compile(r"\w+")


def answer_key(text: str) -> str:
    """What an answer says, reduced for comparison: ``n:42``, ``c:b``, ``y:yes`` or ``t:words ...``."""
    text = text.strip()
    final = _FINAL.search(text)
    if final:
        text = final.group(1).strip()
    lowered = text.lower()
    choice = _CHOICE.match(lowered)
    if choice and len(lowered) <= 80:
        return "c:" + choice.group(1)
    first = lowered.split(None, 1)[0].strip(".,!:;") if lowered else ""
    if first in ("yes", "no"):
        return "y:" + first
    numbers: list[str] = _NUMBER.findall(lowered)
    if numbers:
        value = numbers[-1].replace(",", "")
        try:
            number = float(value)
        except ValueError:
            return "n:" + value
        return "n:" + (str(int(number)) if number.is_integer() else repr(number))
    words: list[str] = _WORD.findall(lowered)
    return "t:" + " ".join(words)


def keys_agree(a: str, b: str) -> bool:
    if a == b:
        return True
    if not (a.startswith("t:") and b.startswith("t:")):
        return False
    left, right = set(a[2:].split()), set(b[2:].split())
    return bool(left | right) and len(left & right) / len(left | right) >= 0.5


def _again(request: ChatRequest, model: str, suffix: str, temperature: float | None) -> ChatRequest:
    """The same question as a fresh non-streamed request to ``model`` (no logprobs)."""
    params = {k: v for k, v in request.params.items() if k not in ("logprobs", "top_logprobs", "n")}
    if temperature is not None:
        params["temperature"] = temperature
    ask = ChatRequest(model=model, messages=request.messages, params=params, extra=dict(request.extra))
    _inherit(ask, request, suffix)
    return ask


def _inherit(ask: ChatRequest, request: ChatRequest, suffix: str) -> None:
    """``ask`` is made for ``request``: its id is the request's plus ``suffix``, its owner the request's
    (so a cache it passes stays in the caller's namespace)."""
    ask.trace.request_id = f"{request.trace.request_id}-{suffix}"
    parent = request.trace
    ask.trace.tenant, ask.trace.key_id, ask.trace.api_key = parent.tenant, parent.key_id, parent.api_key


def note_call(request: ChatRequest, ask: ChatRequest, response: ChatResponse, started: float) -> None:
    """Note on ``request``'s trace the verifier call ``ask`` that ``response`` answered."""
    cache = ask.trace.cache
    request.trace.calls.append(
        UpstreamCall(
            purpose="verify",
            request_id=ask.trace.request_id,
            model=ask.model,
            deployment=ask.trace.deployment,
            usage=response.usage,
            latency_s=time.perf_counter() - started,
            cache_hit=cache is not None and cache.result == "hit",
        )
    )


class ConsistencyVerifier:
    """Self-consistency: ``samples - 1`` more answers from the same tier, sampled at
    ``temperature``; the score is the share of them that agree with the answer given."""

    def __init__(self, groups: Mapping[str, Backend], samples: int = 3, temperature: float = 0.7) -> None:
        self.groups = groups
        self.samples = samples
        self.temperature = temperature

    async def score(self, request: ChatRequest, response: ChatResponse) -> float | None:
        backend = self.groups.get(request.model)
        if backend is None or self.samples < 2:
            return None
        asks = [
            _again(request, request.model, f"sample{i}", self.temperature) for i in range(1, self.samples)
        ]
        started = time.perf_counter()
        answers = await asyncio.gather(*(backend.complete(a) for a in asks), return_exceptions=True)
        for ask, answer in zip(asks, answers, strict=True):
            if isinstance(answer, ChatResponse):
                note_call(request, ask, answer, started)
        texts = [a.text for a in answers if isinstance(a, ChatResponse)]
        if not texts:
            return None  # every extra sample failed: no opinion
        key = answer_key(response.text)
        return sum(keys_agree(key, answer_key(t)) for t in texts) / len(texts)


class AgreementVerifier:
    """Agreement between two cheap models: the peer tier answers the same question;
    the score is 1 when the two answers agree, else 0 (None when the peer fails)."""

    def __init__(self, peer: Backend, model: str) -> None:
        self.peer = peer
        self.model = model

    async def score(self, request: ChatRequest, response: ChatResponse) -> float | None:
        if request.model == self.model:
            return None  # the peer's own answer: nothing to compare with
        ask = _again(request, self.model, "peer", None)
        started = time.perf_counter()
        try:
            other = await self.peer.complete(ask)
        except ThriftyError:
            return None
        note_call(request, ask, other, started)
        return 1.0 if keys_agree(answer_key(response.text), answer_key(other.text)) else 0.0


def make_verifier(
    kind: str,
    judge: Backend | None = None,
    judge_model: str = "",
    *,
    groups: Mapping[str, Backend] | None = None,
    samples: int = 3,
    peer: Backend | None = None,
    peer_model: str = "",
) -> Verifier:
    if kind == "logprobs":
        return LogprobVerifier()
    if kind == "format":
        return FormatVerifier()
    if kind == "judge":
        if judge is None:
            raise ValueError("verifier 'judge' needs a judge backend")
        return JudgeVerifier(judge, judge_model)
    if kind == "consistency":
        return ConsistencyVerifier(groups or {}, samples)
    if kind == "agreement":
        if peer is None:
            raise ValueError("verifier 'agreement' needs a peer backend")
        return AgreementVerifier(peer, peer_model)
    return AutoVerifier()
