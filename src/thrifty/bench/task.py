"""What a benchmark task is, what a grade is, and the answer-reading rules every grader shares.

A :class:`BenchTask` is plain data (JSON in and out) so a run's plan can be
stored and resumed: the prompt sent to the model, and ``expected``, whatever
the domain's grader needs to check an answer (a number, a maze, a list...).

Reading an answer (:func:`final_answer`): the text after the last
``ANSWER:`` marker (any case) if the reply has one, else the whole reply.
Every prompt asks for that marker; a reply without it is still read, so a
model is not failed for format alone when its answer is unambiguous. An
answer that copies 40 or more characters of the question (:func:`echoes`)
fails whatever it contains: small models repeat the question back, and a
number in the copy is not an answer.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

DOMAINS = ("general", "quantum", "maze", "sorting", "image")
TYPES = ("generation", "solving", "analysis", "optimisation")
ANSWER_RULE = "End your reply with one line: ANSWER: <your answer>."


@dataclass(frozen=True)
class BenchTask:
    """One generated task: its id (``domain/type/index``), the prompt, and what the grader needs."""

    id: str
    domain: str
    type: str
    prompt: str
    expected: Any

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "domain": self.domain,
            "type": self.type,
            "prompt": self.prompt,
            "expected": self.expected,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchTask:
        return cls(data["id"], data["domain"], data["type"], data["prompt"], data["expected"])


@dataclass(frozen=True)
class Grade:
    ok: bool
    reason: str  # why not, or "correct"


CORRECT = Grade(True, "correct")


def fail(reason: str) -> Grade:
    return Grade(False, reason)


class Domain(Protocol):
    """A task generator and its grader, one module per domain."""

    def generate(self, kind: str, rng: random.Random, index: int) -> BenchTask: ...

    def grade(self, task: BenchTask, text: str) -> Grade: ...


Maker = Callable[[random.Random, int], BenchTask]


def final_answer(text: str) -> str:
    """The text after the last ``ANSWER:`` marker, else the whole reply; stripped."""
    found = list(re.finditer(r"answer\s*[:：]", text, flags=re.IGNORECASE))
    return (text[found[-1].end() :] if found else text).strip()


ECHO_CHARS = 40


def echoes(prompt: str, text: str) -> bool:
    """True when the answer copies a run of ``ECHO_CHARS`` characters of the prompt (whitespace folded).

    Small models often repeat the question back; a number or letter that
    happens to sit in the copied question must not count as an answer.
    """
    answer = " ".join(final_answer(text).split())
    question = " ".join(prompt.split())
    if len(answer) < ECHO_CHARS:
        return False
    return any(answer[i : i + ECHO_CHARS] in question for i in range(0, len(answer) - ECHO_CHARS + 1, 4))


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def integers(text: str) -> list[int]:
    """Every integer in ``text``, in order (thousands separators dropped)."""
    return [int(x) for x in re.findall(r"-?\d+", re.sub(r"(?<=\d),(?=\d{3}\b)", "", text))]


def first_integer(text: str) -> int | None:
    found = integers(text)
    return found[0] if found else None


def first_number(text: str) -> float | None:
    """The first decimal number in ``text`` (a fraction ``a/b`` counts as its value)."""
    frac = re.search(r"(-?\d+)\s*/\s*(\d+)", text)
    number = _NUMBER.search(text)
    if frac and (number is None or frac.start() <= number.start()) and int(frac.group(2)):
        return int(frac.group(1)) / int(frac.group(2))
    if number is None:
        return None
    value = float(number.group(0))
    return value if math.isfinite(value) else None


def grid_lines(text: str, alphabet: str) -> list[str]:
    """The longest run of consecutive lines made only of ``alphabet`` (spaces between cells ignored)."""
    best: list[str] = []
    run: list[str] = []
    for raw in text.replace("`", "").splitlines():
        line = raw.replace(" ", "").strip()
        if line and all(c in alphabet for c in line):
            run.append(line)
            if len(run) > len(best):
                best = list(run)
        else:
            run = []
    return best


def task_id(domain: str, kind: str, index: int) -> str:
    return f"{domain}/{kind}/{index}"
