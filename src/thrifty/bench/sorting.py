"""Sorting tasks: sort a list, trace an algorithm, count the fewest swaps, write a sort function.

Grading, per task type (the reply is read with :func:`~.task.final_answer`):

- **solving** (sort a list ascending): the integers of the answer, in order,
  must equal the sorted list exactly (nothing missing, nothing extra).
- **analysis** (either: the list after one left-to-right pass of bubble
  sort; or: the number of the line holding the bug in a short insertion sort):
  the integers of the answer must equal the list after that pass; or the
  first integer must be the bug's line number.
- **optimisation** (the fewest swaps of adjacent elements that sort the
  list, i.e. its number of inversions): the first integer must equal it.
- **generation** (write ``def sort_list(xs)`` returning a new ascending
  list): the code (the last fenced block, else from ``def sort_list`` on) is
  run in a sandboxed worker process (:class:`thrifty.agent.sandbox.Sandbox`:
  a fresh interpreter, a memory cap, killed at a time limit) on the task's
  fixed random inputs; it passes if every output equals ``sorted(input)``.
  Any built-in may be used: this checks working code, not ingenuity. Code
  that does not compile, raises, loops, or runs out of memory fails.
  :func:`grade` only checks that there is code; :func:`grade_code` runs it.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import TYPE_CHECKING, Any

from .task import ANSWER_RULE, CORRECT, BenchTask, Grade, fail, final_answer, first_integer, integers, task_id

if TYPE_CHECKING:
    from ..agent.sandbox import Sandbox

DOMAIN = "sorting"
CODE_TIMEOUT_S = 5.0
CODE_MEMORY_MB = 256

_INSERTION_SORT = [
    "def insertion_sort(xs):",
    "    for i in range(1, len(xs)):",
    "        key = xs[i]",
    "        j = i - 1",
    "        while j >= 0 and xs[j] > key:",
    "            xs[j + 1] = xs[j]",
    "            j -= 1",
    "        xs[j + 1] = key",
    "    return xs",
]
# (line number, the buggy line) -- each breaks the sort on most inputs
_BUGS = [
    (2, "    for i in range(1, len(xs) - 1):"),
    (5, "        while j >= 0 and xs[j] < key:"),
    (6, "            xs[j] = xs[j + 1]"),
    (7, "            j += 1"),
    (8, "        xs[j] = key"),
    (4, "        j = i"),
]


def bubble_pass(xs: list[int]) -> list[int]:
    out = list(xs)
    for i in range(len(out) - 1):
        if out[i] > out[i + 1]:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def inversions(xs: list[int]) -> int:
    return sum(1 for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[i] > xs[j])


def _numbers(rng: random.Random, low: int, high: int) -> list[int]:
    return [rng.randint(-20, 99) for _ in range(rng.randint(low, high))]


def generate(kind: str, rng: random.Random, index: int) -> BenchTask:
    tid = task_id(DOMAIN, kind, index)
    if kind == "solving":
        xs = _numbers(rng, 5, 10)
        prompt = f"Sort this list of integers in ascending order: {xs}. {ANSWER_RULE}"
        return BenchTask(tid, DOMAIN, kind, prompt, {"list": sorted(xs)})
    if kind == "analysis":
        if index % 2 == 0:
            xs = _numbers(rng, 5, 7)
            prompt = (
                f"Bubble sort makes passes from left to right, swapping each adjacent pair that is out of "
                f"order. What is the list {xs} after exactly one pass? {ANSWER_RULE}"
            )
            return BenchTask(tid, DOMAIN, kind, prompt, {"list": bubble_pass(xs)})
        line, bad = rng.choice(_BUGS)
        code = list(_INSERTION_SORT)
        code[line - 1] = bad
        shown = "\n".join(f"{i + 1}: {text}" for i, text in enumerate(code))
        prompt = (
            f"This insertion sort has exactly one wrong line:\n{shown}\n"
            f"Which line number has the bug? {ANSWER_RULE}"
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"line": line})
    if kind == "optimisation":
        xs = _numbers(rng, 4, 7)
        prompt = (
            f"What is the smallest number of swaps of two adjacent elements that sorts {xs} in "
            f"ascending order? {ANSWER_RULE}"
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"swaps": inversions(xs)})
    if kind == "generation":
        cases = [_numbers(rng, 0, 12) for _ in range(6)] + [[], [3, 3, 1]]
        prompt = (
            "Write a Python function `def sort_list(xs):` that returns a new list with the integers of "
            "xs in ascending order. Reply with the code in one ```python block."
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"cases": cases})
    raise ValueError(f"unknown task type {kind!r}")


def extract_code(text: str) -> str | None:
    """The last fenced code block that defines sort_list, else the text from ``def sort_list`` on."""
    blocks = re.findall(r"```[a-zA-Z0-9_]*\n(.*?)```", text, flags=re.DOTALL)
    for block in reversed(blocks):
        if "def sort_list" in block:
            return str(block)
    at = text.find("def sort_list")
    return None if at < 0 else text[at:].split("```")[0]


def grade(task: BenchTask, text: str) -> Grade:
    """Every type but generation in full; for generation only whether there is code to run."""
    exp = task.expected
    answer = final_answer(text)
    if task.type in ("solving", "analysis") and "list" in exp:
        got = integers(answer)
        if not got:
            return fail("no list in the answer")
        return CORRECT if got == exp["list"] else fail(f"answered {got}, expected {exp['list']}")
    if task.type == "analysis":
        line = first_integer(answer)
        if line is None:
            return fail("no line number in the answer")
        return CORRECT if line == exp["line"] else fail(f"answered line {line}, the bug is on {exp['line']}")
    if task.type == "optimisation":
        swaps = first_integer(answer)
        if swaps is None:
            return fail("no number in the answer")
        return CORRECT if swaps == exp["swaps"] else fail(f"answered {swaps}, the fewest is {exp['swaps']}")
    if task.type == "generation":
        return CORRECT if extract_code(text) is not None else fail("no `def sort_list` in the answer")
    return fail(f"unknown task type {task.type!r}")


def check_code(source: str, cases: list[list[int]]) -> str | None:
    """Run in a sandbox worker: None when ``sort_list`` sorts every case, else why not."""
    namespace: dict[str, Any] = {"__name__": "bench_answer"}
    try:
        exec(compile(source, "<answer>", "exec"), namespace)  # the sandbox is what makes this safe
    except MemoryError:
        raise  # the sandbox reports it as over budget and replaces the worker
    except Exception as exc:
        return f"the code does not run: {type(exc).__name__}: {exc}"
    fn = namespace.get("sort_list")
    if not callable(fn):
        return "the code defines no sort_list function"
    for case in cases:
        try:
            got = fn(list(case))
        except MemoryError:
            raise
        except Exception as exc:
            return f"sort_list({case}) raised {type(exc).__name__}: {exc}"
        if not isinstance(got, list) or got != sorted(case):
            return f"sort_list({case}) returned {got!r:.80}"
    return None


async def grade_code(task: BenchTask, text: str, sandbox: Sandbox) -> Grade:
    """A generation answer, run: the code must sort every case within the time and memory limits."""
    first = grade(task, text)
    if not first.ok:
        return first
    source = extract_code(text)
    assert source is not None
    from ..agent.tools import ToolError

    try:
        async with asyncio.timeout(CODE_TIMEOUT_S):
            why = await sandbox.call(
                f"{__name__}:check_code",
                {"source": source, "cases": task.expected["cases"]},
                memory_mb=CODE_MEMORY_MB,
            )
    except TimeoutError:
        return fail(f"the code ran longer than {CODE_TIMEOUT_S:g} s")
    except ToolError as exc:
        return fail(exc.message)
    except Exception as exc:  # anything the answer's code raised that escaped check_code
        return fail(f"the code failed: {type(exc).__name__}")
    return CORRECT if why is None else fail(str(why))


def reference(task: BenchTask) -> str:
    """A known-good answer (for tests and calibration)."""
    exp = task.expected
    if "list" in exp:
        return f"ANSWER: {exp['list']}"
    if task.type == "analysis":
        return f"ANSWER: {exp['line']}"
    if task.type == "optimisation":
        return f"ANSWER: {exp['swaps']}"
    return "```python\ndef sort_list(xs):\n    return sorted(xs)\n```"
