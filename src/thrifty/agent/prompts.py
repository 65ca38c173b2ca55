"""What the planner and the joiner are told, and how their answers are read."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .executor import State, TaskRun
from .plan import as_text
from .tools import ToolRegistry

PLAN_RULES = """You answer questions by planning calls to tools. The calls run in parallel
wherever one does not need another's result, so split independent look-ups into separate tasks.

Tools:
{tools}

Write the plan one task per line, like `1. tool("text", 2)`. Arguments are literals
(quoted strings, numbers, lists, name=value); `$N` stands for the result of task N and may
appear anywhere in the arguments, including inside strings. A task may only use results of tasks
on earlier lines. A line `Thought: ...` may come before a task. Use only the tools above.
Number tasks from {start}. Finish the plan with a last line `{start_join}. join()` (numbered
after your last task) and write nothing after it."""

DEFAULT_EXAMPLES = """Question: Which is taller, the Eiffel Tower or the Statue of Liberty, and by how much?
Thought: The two heights are independent look-ups.
1. search("Eiffel Tower height")
2. search("Statue of Liberty height")
Thought: Subtract once both are known.
3. calc("x1 - x2", [$1, $2])
4. join()"""

CALL_RULES = """You answer questions by calling the tools you are given. Make every call
you need in this one reply: they run in parallel wherever one does not need another's result.
Your calls are numbered in order from {start}; an argument written "$N" (or containing $N)
receives the result of call N, so later calls can build on earlier ones."""

JOIN_RULES = """Answer the question from the results of the tasks below. Reply in exactly this form:
Thought: <one or two sentences>
Action: Finish(<the answer>)
If the results are not enough to answer, reply instead with
Action: Replan(<what is missing or went wrong>)"""

_ACTION = re.compile(r"Action\s*:\s*(Finish|Replan)\s*\((.*)\)\s*$", re.S | re.I)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The joiner's decision: an answer, or a reason to plan again."""

    answer: str | None
    replan: str | None
    thought: str = ""


def plan_messages(
    question: str,
    registry: ToolRegistry,
    *,
    start: int = 1,
    examples: Iterable[str] = (),
    history: str = "",
    native: bool = False,
) -> list[dict[str, str]]:
    """The planner's prompt; ``native`` for function calling instead of plan text."""
    if native:
        system = CALL_RULES.format(start=start)
    else:
        shots = "\n\n".join([DEFAULT_EXAMPLES, *examples])
        system = PLAN_RULES.format(tools=registry.planner_text(), start=start, start_join="N")
        system += f"\n\nExample (tools there may differ from yours):\n{shots}"
    user = f"Question: {question}"
    if history:
        user += f"\n\n{history}\nPlan only the new tasks, numbered from {start}."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def describe_runs(runs: Iterable[TaskRun], limit: int = 2000) -> str:
    """Task lines with their results or errors, for the joiner and for replans."""
    lines = []
    for run in runs:
        head = f"${run.id} = {run.task.describe()}"
        if run.state is State.DONE:
            text = as_text(run.result)
            text = text if len(text) <= limit else text[:limit] + " [truncated]"
            note = " (fallback)" if run.used_fallback else ""
            lines.append(f"{head}{note} -> {text}")
        else:
            lines.append(f"{head} -> {run.state.value.upper()}: {run.error}")
    return "\n".join(lines) or "(no tasks ran)"


def join_messages(question: str, runs: Iterable[TaskRun]) -> list[dict[str, str]]:
    body = f"Question: {question}\n\nTask results:\n{describe_runs(runs)}"
    return [{"role": "system", "content": JOIN_RULES}, {"role": "user", "content": body}]


def read_verdict(text: str) -> Verdict:
    """The joiner's reply; text without an Action line counts as the answer."""
    thought = ""
    m_thought = re.search(r"Thought\s*:\s*(.*)", text)
    if m_thought:
        thought = m_thought.group(1).strip()
    m = _ACTION.search(text)
    if m is None:
        return Verdict(answer=text.strip(), replan=None, thought=thought)
    kind, inner = m.group(1).lower(), m.group(2).strip().strip('"').strip()
    if kind == "replan":
        return Verdict(answer=None, replan=inner or "the results were not enough", thought=thought)
    return Verdict(answer=inner, replan=None, thought=thought)
