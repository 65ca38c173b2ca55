"""Plans from text (LLMCompiler's format, streamed), JSON, or OpenAI tool_calls.

The text format, one task per line, ending with ``join()``::

    Thought: I need both depths first.
    1. search("Mariana Trench depth")
    2. search("Puerto Rico Trench depth")
    3. math("0.8 * x vs 1.2 * y", context=[$1, $2])
    4. join()

``parse_stream`` reads text deltas as the planner writes them and yields each
task the moment its line is complete, so execution can start early.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from .plan import Fallback, Known, PlanError, Ref, Task, find_refs, topological_order
from .tools import ToolRegistry

_LINE = re.compile(r"^\s*(?:(\d+)\s*[.:)]\s*)?([A-Za-z_]\w*)\s*\((.*)\)\s*;?\s*$", re.S)
_THOUGHT = re.compile(r"^\s*Thought\s*:\s*(.*)$", re.I)
_STRING_OR_REF = re.compile(r"(\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')|\$\{?(\d+)\}?")
_REF_NAME = re.compile(r"__ref_(\d+)__")


class PlanBuilder:
    """Checks tasks as they arrive: known tool, unique id, references, schema.

    ``earlier`` holds ids from previous rounds (replans keep one id space).
    Streamed tasks may only reference tasks defined before them, which also
    rules out cycles; whole plans are checked for cycles with a topological sort.
    """

    def __init__(self, registry: ToolRegistry, earlier: Iterable[int] = ()) -> None:
        self.registry = registry
        self.earlier = set(earlier)
        self.tasks: dict[int, Task] = {}
        self.joined = False
        self.next_id = max(self.earlier, default=0) + 1

    def make(
        self,
        id: int | None,
        tool: str,
        args: list[Any],
        kwargs: Mapping[str, Any],
        **extra: Any,
    ) -> Task:
        """A bound task (not yet checked against the other tasks)."""
        tid = self.next_id if id is None else id
        bound = self.registry.bind(tool, args, kwargs)
        task = Task(id=tid, tool=tool, args=bound, **extra)
        self.next_id = max(self.next_id, tid + 1)
        return task

    def add(self, task: Task, *, known: set[int] | None = None) -> Task:
        """Check ``task`` against what is known so far and record it."""
        if task.id in self.tasks or task.id in self.earlier:
            raise PlanError(f"task ${task.id} is defined twice")
        visible = known if known is not None else Known(self.earlier, self.tasks)
        deps = find_refs(task.args, Known(visible, (task.id,)))
        if task.id in deps:
            raise PlanError(f"task ${task.id} refers to itself (a cycle)")
        missing = sorted(d for d in deps if d not in visible)
        if missing:
            names = ", ".join(f"${m}" for m in missing)
            raise PlanError(f"task ${task.id} ({task.tool}) refers to {names}, which is not an earlier task")
        pending = [k for k, v in task.args.items() if find_refs(v, visible)]
        self.registry.check(task.tool, task.args, pending=pending)
        if task.fallback is not None and task.fallback.tool is not None:
            fb_pending = [k for k, v in task.fallback.args.items() if find_refs(v, visible)]
            self.registry.check(task.fallback.tool, task.fallback.args, pending=fb_pending)
            deps |= find_refs(dict(task.fallback.args), visible)
        task.deps = frozenset(deps)
        task.ref_args = frozenset(pending)
        self.tasks[task.id] = task
        return task

    def add_all(self, tasks: list[Task]) -> list[Task]:
        """Add a whole plan at once: any order, then a cycle check."""
        known = self.earlier | {t.id for t in tasks}
        if len(known) < len(self.earlier) + len(tasks):
            raise PlanError("the plan defines a task id twice")
        for task in tasks:
            self.add(task, known=known)
        topological_order({t.id: t for t in tasks})
        return tasks


# --- LLMCompiler text -------------------------------------------------------


def parse_args(text: str) -> tuple[list[Any], dict[str, Any]]:
    """``"x", [$1, 2], k=3`` -> positional and keyword values; ``$N`` -> Ref(N)."""

    def swap(m: re.Match[str]) -> str:
        return m.group(1) if m.group(1) is not None else f"__ref_{m.group(2)}__"

    source = _STRING_OR_REF.sub(swap, text)
    try:
        call = ast.parse(f"f({source})", mode="eval").body
    except SyntaxError as exc:
        raise PlanError(f"cannot read the arguments ({text!r}): {exc.msg}") from None
    assert isinstance(call, ast.Call)
    args = [_literal(a) for a in call.args]
    kwargs: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise PlanError("**kwargs are not allowed in a plan")
        kwargs[kw.arg] = _literal(kw.value)
    return args, kwargs


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        m = _REF_NAME.fullmatch(node.id)
        if m:
            return Ref(int(m.group(1)))
        if node.id in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[node.id]
        raise PlanError(f"unknown name {node.id!r} in the arguments (strings need quotes)")
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise PlanError("dict unpacking is not allowed in a plan")
        return {str(_literal(k)): _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand)
        if isinstance(value, int | float):
            return -value if isinstance(node.op, ast.USub) else value
    raise PlanError(f"only literals and $N references are allowed in arguments, not {ast.unparse(node)!r}")


class TextPlanParser:
    """Feeds on text deltas; returns the tasks each completed line adds."""

    def __init__(self, builder: PlanBuilder) -> None:
        self.builder = builder
        self._buffer = ""
        self._thought = ""

    def feed(self, delta: str) -> list[Task]:
        if self.builder.joined:
            return []
        self._buffer += delta
        out: list[Task] = []
        while "\n" in self._buffer and not self.builder.joined:
            line, self._buffer = self._buffer.split("\n", 1)
            task = self._line(line)
            if task is not None:
                out.append(task)
        return out

    def close(self) -> list[Task]:
        """The last line (text may end without a newline)."""
        rest, self._buffer = self._buffer, ""
        task = None if self.builder.joined else self._line(rest)
        return [task] if task is not None else []

    def _line(self, line: str) -> Task | None:
        thought = _THOUGHT.match(line)
        if thought:
            self._thought = thought.group(1).strip()
            return None
        m = _LINE.match(line.strip().strip("`"))
        if m is None:
            return None
        number, tool, arg_text = m.groups()
        if tool == "join":
            self.builder.joined = True
            return None
        args, kwargs = parse_args(arg_text)
        task = self.builder.make(int(number) if number else None, tool, args, kwargs, thought=self._thought)
        self._thought = ""
        return self.builder.add(task)


async def parse_stream(deltas: AsyncIterator[str], builder: PlanBuilder) -> AsyncIterator[Task]:
    """Tasks from a stream of text deltas, each as soon as its line is complete.

    A stream that starts with ``{`` or ``[`` (after an optional code fence) is
    a JSON plan instead: it is read to the end, then checked as a whole.
    """
    parser = TextPlanParser(builder)
    head = ""
    json_text: list[str] | None = None
    async for delta in deltas:
        if json_text is not None:
            json_text.append(delta)
            continue
        if len(head) < 16:
            head += delta
            start = head.lstrip().removeprefix("```json").removeprefix("```").lstrip()
            if start[:1] in ("{", "["):
                json_text = [head]
                continue
        for task in parser.feed(delta):
            yield task
        if builder.joined:
            break
    if json_text is not None:
        text = "".join(json_text).strip().removeprefix("```json").removeprefix("```").removesuffix("```")
        for task in parse_json_plan(text, builder):
            yield task
        return
    for task in parser.close():
        yield task


def parse_text(text: str, builder: PlanBuilder) -> list[Task]:
    parser = TextPlanParser(builder)
    return parser.feed(text) + parser.close()


# --- JSON plans and tool_calls ----------------------------------------------


def parse_json_plan(plan: str | Mapping[str, Any] | list[Any], builder: PlanBuilder) -> list[Task]:
    """``{"tasks": [{"id", "tool", "args", "fallback"?, "timeout_s"?, "est_s"?}]}`` or the bare list."""
    try:
        data = json.loads(plan) if isinstance(plan, str) else plan
    except json.JSONDecodeError as exc:
        raise PlanError(f"the JSON plan does not parse: {exc}") from None
    items = data.get("tasks") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise PlanError('a JSON plan is a list of tasks or {"tasks": [...]}')
    tasks = [_json_task(item, builder) for item in items]
    builder.joined = True
    return builder.add_all(tasks)


def _json_task(item: Any, builder: PlanBuilder) -> Task:
    if not isinstance(item, Mapping) or not isinstance(item.get("tool"), str):
        raise PlanError(f"each task needs a 'tool' name: {item!r}")
    raw = item.get("args", {})
    args, kwargs = (list(raw), {}) if isinstance(raw, list) else ([], dict(raw))
    tid = item.get("id")
    if tid is not None and not isinstance(tid, int):
        tid = int(str(tid).lstrip("$"))
    timeout = _seconds(item, "timeout_s")
    return builder.make(
        tid,
        item["tool"],
        args,
        kwargs,
        fallback=_fallback(item.get("fallback"), builder),
        thought=str(item.get("thought", "")),
        timeout_s=timeout,
        est_s=_seconds(item, "est_s"),
    )


def _seconds(item: Mapping[str, Any], key: str) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    try:
        seconds = (
            float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else -1.0
        )
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise PlanError(f"{key} must be a positive number of seconds, not {value!r}", param=key)
    return seconds


def _fallback(raw: Any, builder: PlanBuilder) -> Fallback | None:
    if raw is None:
        return None
    if isinstance(raw, Mapping) and "tool" in raw:
        args = raw.get("args", {})
        positional, kwargs = (list(args), {}) if isinstance(args, list) else ([], dict(args))
        return Fallback(tool=raw["tool"], args=builder.registry.bind(raw["tool"], positional, kwargs))
    if isinstance(raw, Mapping) and "value" in raw:
        return Fallback(value=raw["value"])
    raise PlanError('a fallback is {"value": ...} or {"tool": ..., "args": ...}')


def parse_tool_calls(calls: Sequence[Mapping[str, Any]], builder: PlanBuilder) -> list[Task]:
    """OpenAI ``tool_calls``, numbered in order after the earlier ids; ``$N`` refs work."""
    tasks = []
    for call in calls:
        fn = call.get("function") or {}
        raw = fn.get("arguments") or "{}"
        try:
            kwargs = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except json.JSONDecodeError as exc:
            raise PlanError(f"tool call {fn.get('name')!r} has arguments that are not JSON: {exc}") from None
        if not isinstance(kwargs, dict):
            raise PlanError(f"tool call {fn.get('name')!r} arguments must be a JSON object")
        tasks.append(builder.make(None, str(fn.get("name")), [], kwargs, call_id=str(call.get("id", ""))))
    builder.joined = True
    return builder.add_all(tasks)
