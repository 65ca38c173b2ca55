"""Hand-written complexity features of a prompt, and the score the rules policy uses.

Each feature is a small, explainable number; the score is their weighted sum
clipped to [0, 1]. Positive signals: length, code, several questions, design /
security / performance vocabulary, multi-step cues, referenced files, tools.
Negative signals: formatting, translation and simple-question cues.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..types import Message, message_text

_WORD = re.compile(r"\w+", re.UNICODE)
_FENCE = re.compile(r"```")
_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import|function |public |#include|SELECT |for \(|if \()", re.MULTILINE
)
_FILE = re.compile(
    r"(?<![\w/])(?:[\w.-]+/)*[\w-]+\.(?:py|js|ts|tsx|go|rs|java|c|cc|cpp|h|hpp|rb|php|cs|"
    r"kt|swift|sql|yaml|yml|json|toml|md|txt|csv|html|css|sh|ipynb)\b"
)
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S", re.MULTILINE)

_VOCAB = {
    "architecture": (
        "architecture",
        "design",
        "scalab",
        "microservice",
        "distributed",
        "trade-off",
        "tradeoff",
        "system design",
        "refactor",
        "abstraction",
        "concurren",
        "schema",
    ),
    "security": (
        "secur",
        "vulnerab",
        "exploit",
        "injection",
        "authenticat",
        "authoriz",
        "encrypt",
        "xss",
        "csrf",
        "threat",
        "attack",
        "sanitiz",
        "cve",
    ),
    "performance": (
        "performance",
        "optimi",
        "latency",
        "throughput",
        "complexity",
        "profil",
        "bottleneck",
        "memory leak",
        "benchmark",
        "big-o",
        "o(n",
    ),
    "reasoning": (
        "prove",
        "derive",
        "explain why",
        "analy",
        "compare",
        "evaluate",
        "reason",
        "calculate",
        "solve",
        "debug",
        "implement",
    ),
}
_MULTI_STEP = (
    "step by step",
    "step-by-step",
    "first,",
    "then ",
    "after that",
    "finally",
    "next,",
    "multi-step",
    "plan ",
    "walk me through",
    "in detail",
)
_SIMPLE = (
    "translate",
    "translation",
    "format ",
    "reformat",
    "convert ",
    "fix the typo",
    "spell",
    "capitalize",
    "what is ",
    "who is ",
    "define ",
    "summarize",
    "tl;dr",
    "rephrase",
    "yes or no",
    "true or false",
    "list the",
    "when was",
    "where is",
)

WEIGHTS: Mapping[str, float] = {
    "length": 0.22,
    "code": 0.18,
    "questions": 0.06,
    "architecture": 0.14,
    "security": 0.14,
    "performance": 0.12,
    "reasoning": 0.08,
    "multi_step": 0.12,
    "files": 0.08,
    "tools": 0.10,
    "simple": -0.18,
}


def prompt_text(messages: Sequence[Message]) -> str:
    """The text the router looks at: every user and system message, in order."""
    parts = [message_text(m) for m in messages if m.get("role") in ("user", "system", None)]
    return "\n".join(p for p in parts if p)


def extract(text: str, params: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Named features of one prompt, each in [0, 1]."""
    lower = text.lower()
    words = len(_WORD.findall(text))
    fences = len(_FENCE.findall(text)) // 2
    code_lines = len(_CODE_LINE.findall(text))
    features = {
        # log-scaled: ~10 words -> 0.25, ~100 -> 0.5, ~1000 -> 0.75, 10k+ -> 1
        "length": min(1.0, math.log10(max(words, 1)) / 4.0),
        "code": min(1.0, fences * 0.5 + code_lines * 0.1),
        "questions": min(1.0, max(0, text.count("?") - 1) / 3.0),
        "multi_step": min(1.0, _hits(lower, _MULTI_STEP) / 2.0 + len(_NUMBERED.findall(text)) / 8.0),
        "files": min(1.0, len(set(_FILE.findall(text))) / 2.0),
        "tools": 1.0 if params and params.get("tools") else 0.0,
        "simple": min(1.0, _hits(lower, _SIMPLE) / 1.0) * (1.0 if words < 80 else 0.5),
    }
    for name, cues in _VOCAB.items():
        features[name] = min(1.0, _hits(lower, cues) / 2.0)
    return features


def complexity(features: Mapping[str, float]) -> float:
    """The weighted sum of the features, clipped to [0, 1]."""
    total = sum(WEIGHTS[name] * value for name, value in features.items() if name in WEIGHTS)
    return max(0.0, min(1.0, total))


def tier_index(score: float, thresholds: Sequence[float]) -> int:
    """Which tier a score lands in: the number of cut points it reaches."""
    return sum(1 for cut in thresholds if score >= cut)


def needs(messages: Sequence[Message], params: Mapping[str, Any]) -> frozenset[str]:
    """Capabilities a request needs from the model: tools, vision, json."""
    found: set[str] = set()
    if params.get("tools"):
        found.add("tools")
    fmt = params.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        found.add("json")
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") == "image_url" for p in content
        ):
            found.add("vision")
    return frozenset(found)


def request_kind(features: Mapping[str, float]) -> str:
    """A coarse request type, the context the feedback learner keys on."""
    score = complexity(features)
    topic = max(
        ("architecture", "security", "performance", "reasoning", "simple"),
        key=lambda name: features.get(name, 0.0),
    )
    if features.get(topic, 0.0) == 0.0:
        topic = "general"
    if features.get("code", 0.0) > 0:
        topic += "+code"
    if features.get("tools", 0.0) > 0:
        topic += "+tools"
    return f"{topic}/{min(4, int(score * 5))}"


def _hits(lower: str, cues: Sequence[str]) -> int:
    return sum(1 for cue in cues if cue in lower)
