"""Image tasks: small pictures given as pixel grids of ``#`` (on) and ``.`` (off).

Grading, per task type (the reply is read with :func:`~.task.final_answer`):

- **solving** (which digit, 0-9, is drawn in a 3x5 pixel font, sometimes
  scaled up 2x): the first digit of the answer, or a digit's English name,
  must be the digit drawn.
- **analysis** (how many pixels are on): the first integer must equal the count.
- **optimisation** (the fewest pixels to flip so that the picture is its own
  mirror image left to right): the first integer must equal the number of
  mismatched mirror pairs (one flip fixes each pair, and no fewer can).
- **generation** (draw an h×w picture whose on pixels form exactly a filled
  r-row by c-column rectangle): the longest block of lines made of ``#`` and
  ``.`` must be h lines of w cells, and its on pixels must be exactly one
  filled r×c rectangle.

Anything unreadable is a failure with the reason, never an exception.
"""

from __future__ import annotations

import random
import re

from .task import (
    ANSWER_RULE,
    CORRECT,
    BenchTask,
    Grade,
    fail,
    final_answer,
    first_integer,
    grid_lines,
    task_id,
)

DOMAIN = "image"
FONT = {
    0: ["###", "#.#", "#.#", "#.#", "###"],
    1: [".#.", "##.", ".#.", ".#.", "###"],
    2: ["###", "..#", "###", "#..", "###"],
    3: ["###", "..#", "###", "..#", "###"],
    4: ["#.#", "#.#", "###", "..#", "..#"],
    5: ["###", "#..", "###", "..#", "###"],
    6: ["###", "#..", "###", "#.#", "###"],
    7: ["###", "..#", ".#.", ".#.", ".#."],
    8: ["###", "#.#", "###", "#.#", "###"],
    9: ["###", "#.#", "###", "..#", "###"],
}
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def scale(picture: list[str], factor: int) -> list[str]:
    return ["".join(c * factor for c in row) for row in picture for _ in range(factor)]


def pad(picture: list[str], rng: random.Random) -> list[str]:
    """The picture inside a border of one or two empty columns and rows."""
    left, right, top, bottom = (rng.randint(1, 2) for _ in range(4))
    width = len(picture[0]) + left + right
    rows = ["." * left + row + "." * right for row in picture]
    return ["." * width] * top + rows + ["." * width] * bottom


def mirror_flips(picture: list[str]) -> int:
    return sum(1 for row in picture for i in range(len(row) // 2) if row[i] != row[-1 - i])


def noise(rng: random.Random, rows: int, cols: int, density: float) -> list[str]:
    return ["".join("#" if rng.random() < density else "." for _ in range(cols)) for _ in range(rows)]


def _show(picture: list[str]) -> str:
    return "\n".join(picture)


def generate(kind: str, rng: random.Random, index: int) -> BenchTask:
    tid = task_id(DOMAIN, kind, index)
    if kind == "solving":
        digit = rng.randrange(10)
        picture = pad(scale(FONT[digit], rng.choice([1, 2])), rng)
        prompt = f"This picture (# is ink, . is blank) shows one digit:\n{_show(picture)}\nWhich digit is it? {ANSWER_RULE}"
        return BenchTask(tid, DOMAIN, kind, prompt, {"digit": digit})
    if kind == "analysis":
        picture = noise(rng, rng.randint(4, 6), rng.randint(4, 6), 0.35)
        prompt = f"In this picture # is an on pixel and . is off:\n{_show(picture)}\nHow many pixels are on? {ANSWER_RULE}"
        return BenchTask(tid, DOMAIN, kind, prompt, {"count": _show(picture).count("#")})
    if kind == "optimisation":
        picture = noise(rng, rng.randint(3, 5), rng.choice([4, 6]), 0.4)
        prompt = (
            f"In this picture # is on and . is off:\n{_show(picture)}\nWhat is the smallest number of pixels "
            f"to flip so that the picture becomes symmetric left to right (each row reads the same "
            f"reversed)? {ANSWER_RULE}"
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"flips": mirror_flips(picture)})
    if kind == "generation":
        rows, cols = rng.randint(4, 6), rng.randint(4, 6)
        r, c = rng.randint(1, rows - 1), rng.randint(1, cols - 1)
        prompt = (
            f"Draw a picture of {rows} rows and {cols} columns using # for on and . for off, where the on "
            f"pixels form one filled rectangle {r} rows tall and {c} columns wide. {ANSWER_RULE} Then the "
            "picture, one row per line."
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"rows": rows, "cols": cols, "r": r, "c": c})
    raise ValueError(f"unknown task type {kind!r}")


def grade(task: BenchTask, text: str) -> Grade:
    exp = task.expected
    answer = final_answer(text)
    if task.type == "solving":
        digit = _digit(answer)
        if digit is None:
            return fail("no digit in the answer")
        return (
            CORRECT if digit == exp["digit"] else fail(f"answered {digit}, the picture shows {exp['digit']}")
        )
    if task.type in ("analysis", "optimisation"):
        key = "count" if task.type == "analysis" else "flips"
        value = first_integer(answer)
        if value is None:
            return fail("no number in the answer")
        return CORRECT if value == exp[key] else fail(f"answered {value}, expected {exp[key]}")
    if task.type == "generation":
        return _grade_drawn(exp, answer or text)
    return fail(f"unknown task type {task.type!r}")


def _digit(answer: str) -> int | None:
    found = re.search(r"\d|\b(" + "|".join(NAMES) + r")\b", answer, re.IGNORECASE)
    if found is None:
        return None
    return int(found.group(0)) if found.group(0).isdigit() else NAMES.index(found.group(0).lower())


def _grade_drawn(exp: dict[str, int], text: str) -> Grade:
    picture = grid_lines(text, "#.")
    if not picture:
        return fail("no picture in the answer")
    if len(picture) != exp["rows"] or any(len(row) != exp["cols"] for row in picture):
        return fail(f"the picture is not {exp['rows']}x{exp['cols']}")
    on = [(i, j) for i, row in enumerate(picture) for j, c in enumerate(row) if c == "#"]
    if not on:
        return fail("no pixel is on")
    top, left = min(i for i, _ in on), min(j for _, j in on)
    height, width = max(i for i, _ in on) - top + 1, max(j for _, j in on) - left + 1
    if len(on) != height * width:
        return fail("the on pixels are not one filled rectangle")
    if (height, width) != (exp["r"], exp["c"]):
        return fail(f"the rectangle is {height}x{width}, not {exp['r']}x{exp['c']}")
    return CORRECT


def reference(task: BenchTask) -> str:
    """A known-good answer (for tests and calibration)."""
    exp = task.expected
    if task.type == "solving":
        return f"ANSWER: {exp['digit']}"
    if task.type in ("analysis", "optimisation"):
        return f"ANSWER: {exp['count' if task.type == 'analysis' else 'flips']}"
    rows = ["#" * exp["c"] + "." * (exp["cols"] - exp["c"])] * exp["r"]
    rows += ["." * exp["cols"]] * (exp["rows"] - exp["r"])
    return "ANSWER:\n" + "\n".join(rows)
