"""Prompt rewrite operators, each tied to the reasons it answers.

An operator changes a request in one of two ways: it rewrites the last user
turn (the seed's example: "Explain microservices", rated 2/5 "too complex, I
need concrete examples", becomes "Explain microservices simply with practical
examples") or adds a system instruction. It is never applied to a request that
opts out (``thrifty.learn: false``), to a turn that carries or answers tool
calls, or to a JSON-mode request unless the operator is format-safe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..types import ChatRequest, Message, message_text

BASELINE = "baseline"


@dataclass(frozen=True)
class Operator:
    name: str
    reasons: frozenset[str]  # the complaints it answers
    suffix: str = ""  # appended to the last user turn
    system: str = ""  # or added as a system instruction
    format_safe: bool = False  # leaves a JSON-mode answer's shape alone

    def rewrite(self, text: str) -> str:
        """The user turn rewritten (unchanged for a system-prompt operator)."""
        if not self.suffix:
            return text
        stripped = text.rstrip()
        end = stripped[-1] if stripped and stripped[-1] in ".?!" else ""
        body = stripped[:-1].rstrip() if end else stripped
        if self.suffix.lower() in body.lower():
            return text  # already asked that way
        return f"{body} {self.suffix}{end}"

    def apply(self, messages: Sequence[Message]) -> list[Message]:
        """A new message list with this operator applied; the input is not changed."""
        out = [dict(m) for m in messages]
        if self.suffix:
            for i in range(len(out) - 1, -1, -1):
                if out[i].get("role") == "user" and isinstance(out[i].get("content"), str):
                    out[i]["content"] = self.rewrite(out[i]["content"])
                    break
        if self.system:
            if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
                out[0]["content"] = f"{out[0]['content']}\n\n{self.system}"
            else:
                out.insert(0, {"role": "system", "content": self.system})
        return out


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Operator(
            "simplify_examples",
            frozenset({"too_complex", "missing_examples"}),
            suffix="simply with practical examples",
        ),
        Operator(
            "concise",
            frozenset({"too_long"}),
            system="Answer concisely: lead with the answer, in a few sentences, no preamble.",
        ),
        Operator(
            "detailed",
            frozenset({"too_short"}),
            system="Answer thoroughly: cover the why and the how, with the important details.",
        ),
        Operator(
            "step_by_step",
            frozenset({"wrong"}),
            system="Work through the question step by step and check each step before answering.",
        ),
        Operator(
            "user_language",
            frozenset({"wrong_language"}),
            format_safe=True,
            system="Answer in the language the user wrote in.",
        ),
        Operator(
            "format_hint",
            frozenset({"format"}),
            system="Structure the answer: short headings, bullet points, code in code blocks.",
        ),
        Operator(
            "on_topic",
            frozenset({"off_topic"}),
            format_safe=True,
            system="Answer exactly the question asked; do not drift to related topics.",
        ),
    )
}
_FIRST_FOR: dict[str, str] = {}
for _op in OPERATORS.values():
    for _reason in sorted(_op.reasons):
        _FIRST_FOR.setdefault(_reason, _op.name)


def operator_for(reasons: Sequence[str]) -> Operator | None:
    """The operator answering the first reason that has one."""
    for reason in reasons:
        name = _FIRST_FOR.get(reason)
        if name is not None:
            return OPERATORS[name]
    return None


def exemplar_operator(question: str, answer: str) -> Operator:
    """An operator distilled from a well-rated answer: show it as an example of what worked."""
    return Operator(
        "exemplar",
        frozenset(),
        format_safe=False,
        system=f"An answer users rated highly for a similar question.\nQuestion: {question}\nAnswer: {answer}",
    )


_OPT_OUT_WORDS = re.compile(r"^(false|off|no|0)$", re.IGNORECASE)


def opted_out(options: Mapping[str, Any]) -> bool:
    """True when the request says ``thrifty.learn: false`` (body) or ``x-thrifty-learn: off``."""
    raw = options.get("learn")
    if raw is False:
        return True
    return isinstance(raw, str) and bool(_OPT_OUT_WORDS.match(raw.strip()))


def applicable(request: ChatRequest, operator: Operator) -> bool:
    """Whether ``operator`` may touch ``request`` at all."""
    if request.params.get("tools") or any(
        m.get("role") == "tool" or m.get("tool_calls") for m in request.messages
    ):
        return False
    fmt = request.params.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema"):
        return operator.format_safe
    return True


def last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""
