"""A plan: numbered tool calls whose arguments may use earlier results.

A reference is written ``$N`` (or ``${N}``). A value that is exactly one
reference becomes that task's result, whatever its type; a reference inside
longer text is replaced by the result's text. Inside text, ``$N`` counts as a
reference only when task N exists, so "costs $5" stays text in a plan without
a task 5. Dependencies come from the references.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest

REF_TEXT = re.compile(r"\$\{(\d+)\}|\$(\d+)")
WHOLE_REF = re.compile(r"\s*(?:\$\{(\d+)\}|\$(\d+))\s*")


class PlanError(InvalidRequest):
    """The plan cannot run: a cycle, a missing task, an unknown tool, bad arguments."""

    code = "invalid_plan"


@dataclass(frozen=True, slots=True)
class Ref:
    """The whole result of task ``task``."""

    task: int

    def __repr__(self) -> str:
        return f"${self.task}"


@dataclass(frozen=True, slots=True)
class Fallback:
    """What a task does instead when it or one of its inputs fails.

    Either a constant ``value`` or another ``tool`` call; its arguments may
    reference only tasks that succeeded.
    """

    tool: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    value: Any = None


@dataclass(slots=True)
class Task:
    """One tool call in a plan. ``args`` are bound by name to the tool's parameters.

    ``est_s``: how long this call should take, if the plan knows (it orders
    calls of one tool against each other under a cap).
    """

    id: int
    tool: str
    args: dict[str, Any]
    fallback: Fallback | None = None
    thought: str = ""
    timeout_s: float | None = None
    est_s: float | None = None
    call_id: str = ""
    deps: frozenset[int] = frozenset()
    ref_args: frozenset[str] = frozenset()  # names of the arguments that hold references

    def describe(self) -> str:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in self.args.items())
        return f"{self.tool}({inner})"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, Ref) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def whole_ref(text: str) -> int | None:
    """The task id if ``text`` is exactly one reference like ``$3``."""
    m = WHOLE_REF.fullmatch(text)
    if m is None:
        return None
    return int(m.group(1) or m.group(2))


def text_refs(text: str) -> Iterator[int]:
    for m in REF_TEXT.finditer(text):
        yield int(m.group(1) or m.group(2))


def find_refs(value: Any, known: Container[int] | None = None) -> set[int]:
    """Ids referenced by ``value``: every ``Ref`` and whole-string ``$N``;
    ``$N`` inside text only when N is in ``known`` (all, if ``known`` is None).
    ``known`` is only asked ``in`` (a set, a dict by its keys, a :class:`Known`)."""
    out: set[int] = set()
    _collect(value, known, out)
    return out


class Known:
    """Ids in any of several groups, asked without copying them into one set."""

    def __init__(self, *groups: Container[int]) -> None:
        self.groups = groups

    def __contains__(self, item: object) -> bool:
        return any(item in group for group in self.groups)


def _collect(value: Any, known: Container[int] | None, out: set[int]) -> None:
    if isinstance(value, Ref):
        out.add(value.task)
    elif isinstance(value, str):
        whole = whole_ref(value)
        if whole is not None:
            out.add(whole)
            return
        out.update(n for n in text_refs(value) if known is None or n in known)
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect(item, known, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, known, out)


def resolve(value: Any, results: Mapping[int, Any]) -> Any:
    """``value`` with every reference to a task in ``results`` replaced."""
    if isinstance(value, Ref):
        return results[value.task]
    if isinstance(value, str):
        whole = whole_ref(value)
        if whole is not None and whole in results:
            return results[whole]
        if "$" not in value:
            return value

        def sub(m: re.Match[str]) -> str:
            n = int(m.group(1) or m.group(2))
            return as_text(results[n]) if n in results else m.group(0)

        return REF_TEXT.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: resolve(v, results) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, results) for v in value]
    return value


def as_text(value: Any) -> str:
    """A result as it reads inside text: strings as-is, the rest as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def topological_order(tasks: Mapping[int, Task]) -> list[int]:
    """Ids in an order where each task follows its dependencies; PlanError on a cycle."""
    indegree = {tid: 0 for tid in tasks}
    children: dict[int, list[int]] = {tid: [] for tid in tasks}
    for task in tasks.values():
        for dep in task.deps:
            if dep in tasks:
                indegree[task.id] += 1
                children[dep].append(task.id)
    order = [tid for tid, deg in indegree.items() if deg == 0]
    for tid in order:
        for child in children[tid]:
            indegree[child] -= 1
            if indegree[child] == 0:
                order.append(child)
    if len(order) < len(tasks):
        stuck = sorted(tid for tid, deg in indegree.items() if deg > 0)
        raise PlanError(f"the plan has a cycle among tasks {', '.join(f'${t}' for t in stuck)}")
    return order
