"""General reasoning tasks: word problems, multiple choice from real data, a cost puzzle, a word-count sentence.

Grading, per task type (the reply is read with :func:`~.task.final_answer`):

- **solving** (an arithmetic word problem with a computed answer): the last
  integer of the answer must equal it (the last, so "3 boxes of 4 is 12"
  reads 12).
- **analysis** (a four-way multiple-choice science question, ARC-Challenge as
  shipped in RouterBench's ``arc_challenge_test.csv`` under the shared
  routing data): the letter after "answer is", else the first standalone
  letter A-D of the answer, must be the gold letter. The gold letter is GPT-4's answer on rows where RouterBench
  scores it correct (1.0); other rows are skipped. Only the last question
  of each few-shot prompt is asked. The file is read once, on first use; if
  it is missing, generating these tasks raises :class:`BenchDataMissing`
  naming the file and how to skip them.
- **optimisation** (the cheapest way to buy exactly n items sold singly
  or in packs): the first integer must equal the minimum cost (dynamic
  programming).
- **generation** (write a sentence of exactly k words starting with a given
  word): the first non-empty line of the answer must have exactly k words
  (runs of letters, digits and apostrophes) and begin with that word (any case).
"""

from __future__ import annotations

import ast
import csv
import functools
import random
import re
from pathlib import Path

from ..errors import ThriftyError
from .task import ANSWER_RULE, CORRECT, BenchTask, Grade, fail, final_answer, first_integer, integers, task_id

DOMAIN = "general"
ARC_FILE = "routerbench/arc_challenge_test.csv"
GOLD_MODEL = "gpt-4-1106-preview"
NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana"]
THINGS = ["apples", "pencils", "stickers", "marbles", "cards", "books"]
STARTS = ["The", "Every", "My", "Seven", "Rain", "Quiet", "Birds", "Tomorrow"]


class BenchDataMissing(ThriftyError):
    """A task generator needs a data file that is not there."""

    status = 400
    type = "invalid_request_error"
    code = "bench_data_missing"


def data_dir(given: Path | None) -> Path:
    """The shared routing data folder: ``given``, else where ``thrifty route eval`` looks."""
    if given is not None:
        return given
    from ..routing.evaluation.cli import default_data

    return default_data()


@functools.lru_cache(maxsize=4)
def arc_questions(folder: Path) -> tuple[tuple[str, str], ...]:
    """(question with its four options, gold letter) for every usable row of the ARC test file."""
    path = folder / ARC_FILE
    if not path.is_file():
        raise BenchDataMissing(
            f"general/analysis tasks need the ARC-Challenge questions in {path} (the shared routing "
            "data; see its README). Pass --data FOLDER, or leave the type out with --types."
        )
    csv.field_size_limit(1 << 26)
    out: list[tuple[str, str]] = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            question = _last_question(row.get("prompt") or "")
            gold = _gold(row)
            if question and gold:
                out.append((question, gold))
    return tuple(out)


def _last_question(prompt: str) -> str | None:
    try:
        parts = ast.literal_eval(prompt)
        text = parts[0] if isinstance(parts, list) and parts else prompt
    except (ValueError, SyntaxError):
        text = prompt
    if not isinstance(text, str):
        return None
    block = text.strip().split("\n\n")[-1]
    block = re.sub(r"\nPrint only a single choice.*", "", block, flags=re.DOTALL).strip()
    return block if re.search(r"^A\)", block, re.MULTILINE) else None


def _gold(row: dict[str, str]) -> str | None:
    if row.get(GOLD_MODEL) != "1.0":
        return None
    found = re.fullmatch(r"\s*\[?'?([ABCD])'?\]?\s*", row.get(f"{GOLD_MODEL}|model_response") or "")
    return found.group(1) if found else None


def cheapest(n: int, single: int, pack: int, pack_price: int) -> int:
    best = [0] + [0] * n
    for i in range(1, n + 1):
        best[i] = best[i - 1] + single
        if i >= pack:
            best[i] = min(best[i], best[i - pack] + pack_price)
    return best[n]


def word_problem(rng: random.Random) -> tuple[str, int]:
    who, thing = rng.choice(NAMES), rng.choice(THINGS)
    start, boxes, per, given = rng.randint(3, 20), rng.randint(2, 6), rng.randint(2, 9), rng.randint(1, 5)
    text = (
        f"{who} has {start} {thing}. {who} buys {boxes} boxes with {per} {thing} in each box, then gives "
        f"away {given} {thing}. How many {thing} does {who} have now?"
    )
    return text, start + boxes * per - given


def generate(kind: str, rng: random.Random, index: int, data: Path | None = None) -> BenchTask:
    tid = task_id(DOMAIN, kind, index)
    if kind == "solving":
        text, value = word_problem(rng)
        return BenchTask(tid, DOMAIN, kind, f"{text} {ANSWER_RULE}", {"value": value})
    if kind == "analysis":
        questions = arc_questions(data_dir(data))
        question, gold = questions[rng.randrange(len(questions))]
        prompt = f"{question}\nReply with the letter of the correct option. {ANSWER_RULE}"
        return BenchTask(tid, DOMAIN, kind, prompt, {"letter": gold})
    if kind == "optimisation":
        n, single, pack = rng.randint(5, 20), rng.randint(2, 5), rng.randint(3, 6)
        pack_price = rng.randint(pack * single - pack - 2, pack * single - 1)
        prompt = (
            f"A shop sells pens for ${single} each, or in packs of {pack} for ${pack_price}. What is the "
            f"lowest total price, in dollars, to buy exactly {n} pens? {ANSWER_RULE}"
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"cost": cheapest(n, single, pack, pack_price)})
    if kind == "generation":
        words, start = rng.randint(5, 9), rng.choice(STARTS)
        prompt = (
            f"Write one sentence of exactly {words} words that begins with the word '{start}'. {ANSWER_RULE}"
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"words": words, "start": start})
    raise ValueError(f"unknown task type {kind!r}")


def grade(task: BenchTask, text: str) -> Grade:
    exp = task.expected
    answer = final_answer(text)
    if task.type == "solving":
        found = integers(answer)
        if not found:
            return fail("no number in the answer")
        return (
            CORRECT if found[-1] == exp["value"] else fail(f"answered {found[-1]}, expected {exp['value']}")
        )
    if task.type == "analysis":
        letter = re.search(r"answer is:?\s*\(?([ABCD])(?![A-Za-z])", answer, re.IGNORECASE) or re.search(
            r"(?<![A-Za-z])([ABCD])(?![A-Za-z])", answer
        )
        if letter is None:
            return fail("no option letter in the answer")
        got = letter.group(1)
        return CORRECT if got == exp["letter"] else fail(f"answered {got}, expected {exp['letter']}")
    if task.type == "optimisation":
        cost = first_integer(answer)
        if cost is None:
            return fail("no number in the answer")
        return CORRECT if cost == exp["cost"] else fail(f"answered {cost}, the lowest is {exp['cost']}")
    if task.type == "generation":
        line = next((x.strip() for x in answer.splitlines() if x.strip()), "")
        words = re.findall(r"[A-Za-z0-9']+", line)
        if not words:
            return fail("no sentence in the answer")
        if words[0].lower() != exp["start"].lower():
            return fail(f"the sentence starts with {words[0]!r}, not {exp['start']!r}")
        return CORRECT if len(words) == exp["words"] else fail(f"{len(words)} words, not {exp['words']}")
    return fail(f"unknown task type {task.type!r}")


def reference(task: BenchTask) -> str:
    """A known-good answer (for tests and calibration)."""
    exp = task.expected
    if task.type == "solving":
        return f"ANSWER: {exp['value']}"
    if task.type == "analysis":
        return f"ANSWER: {exp['letter']}"
    if task.type == "optimisation":
        return f"ANSWER: {exp['cost']}"
    return "ANSWER: " + " ".join([exp["start"], *["word"] * (exp["words"] - 1)]) + "."
