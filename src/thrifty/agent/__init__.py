"""Parallel tool plans: LLMCompiler-style plans run as a dataflow graph.

    result = await run_agent("Which is deeper ...?", gateway, model="smart")
    print(result.answer)

Pieces usable on their own: :class:`ToolRegistry` / :class:`ToolSpec` (typed,
lazily imported tools), :class:`PlanBuilder` with the parsers (streamed
LLMCompiler text, JSON, OpenAI tool_calls), :class:`Executor`, and
:class:`Sandbox` (the killable workers CPU tools run in).

Names load on first use, so a sandbox worker importing one tool does not pay
for the agent loop, the backend and the parsers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "AgentResult",
    "DependencyFailed",
    "Durations",
    "Executor",
    "Fallback",
    "PlanBuilder",
    "PlanError",
    "Ref",
    "Sandbox",
    "State",
    "Task",
    "TaskRun",
    "TaskTimeout",
    "ToolContext",
    "ToolCrashed",
    "ToolError",
    "ToolOverBudget",
    "ToolRegistry",
    "ToolSpec",
    "default_registry",
    "parse_json_plan",
    "parse_stream",
    "parse_text",
    "parse_tool_calls",
    "run_agent",
]

_WHERE = {
    "AgentResult": "agent",
    "run_agent": "agent",
    "default_registry": "builtin",
    "Durations": "durations",
    "DependencyFailed": "executor",
    "Executor": "executor",
    "State": "executor",
    "TaskRun": "executor",
    "TaskTimeout": "executor",
    "PlanBuilder": "parse",
    "parse_json_plan": "parse",
    "parse_stream": "parse",
    "parse_text": "parse",
    "parse_tool_calls": "parse",
    "Fallback": "plan",
    "PlanError": "plan",
    "Ref": "plan",
    "Task": "plan",
    "Sandbox": "sandbox",
    "ToolCrashed": "sandbox",
    "ToolOverBudget": "sandbox",
    "ToolContext": "tools",
    "ToolError": "tools",
    "ToolRegistry": "tools",
    "ToolSpec": "tools",
}

if TYPE_CHECKING:
    from .agent import AgentResult, run_agent
    from .builtin import default_registry
    from .durations import Durations
    from .executor import DependencyFailed, Executor, State, TaskRun, TaskTimeout
    from .parse import PlanBuilder, parse_json_plan, parse_stream, parse_text, parse_tool_calls
    from .plan import Fallback, PlanError, Ref, Task
    from .sandbox import Sandbox, ToolCrashed, ToolOverBudget
    from .tools import ToolContext, ToolError, ToolRegistry, ToolSpec


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'thrifty.agent' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
