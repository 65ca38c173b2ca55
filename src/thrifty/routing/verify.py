"""Scoring an answer so the cascade can decide whether to escalate.

A verifier returns a score in [0, 1], or None when it cannot judge (for
example no log-probabilities came back). Built in: token log-probabilities,
format checks, a judge model; any object with the same ``score`` method plugs in.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Protocol

from ..backend import Backend
from ..errors import ThriftyError
from ..types import ChatRequest, ChatResponse, message_text


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
        ask.trace.request_id = request.trace.request_id + "-judge"
        try:
            graded = await self.judge.complete(ask)
        except ThriftyError:
            return None
        found = _GRADE.search(graded.text)
        return None if found is None else int(found.group(1)) / 10.0


def make_verifier(kind: str, judge: Backend | None = None, judge_model: str = "") -> Verifier:
    if kind == "logprobs":
        return LogprobVerifier()
    if kind == "format":
        return FormatVerifier()
    if kind == "judge":
        if judge is None:
            raise ValueError("verifier 'judge' needs a judge backend")
        return JudgeVerifier(judge, judge_model)
    return AutoVerifier()
