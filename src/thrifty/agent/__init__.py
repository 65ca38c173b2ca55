"""Parallel tool plans: LLMCompiler-style plans run as a dataflow graph.

    result = await run_agent("Which is deeper ...?", gateway, model="smart")
    print(result.answer)

Pieces usable on their own: :class:`ToolRegistry` / :class:`ToolSpec` (typed,
lazily imported tools), :class:`PlanBuilder` with the parsers (streamed
LLMCompiler text, JSON, OpenAI tool_calls), :class:`Executor`, and
:class:`Sandbox` (the killable workers CPU tools run in).
"""

from __future__ import annotations

from .agent import AgentResult, run_agent
from .builtin import default_registry
from .durations import Durations
from .executor import DependencyFailed, Executor, State, TaskRun, TaskTimeout
from .parse import PlanBuilder, parse_json_plan, parse_stream, parse_text, parse_tool_calls
from .plan import Fallback, PlanError, Ref, Task
from .sandbox import Sandbox, ToolCrashed, ToolOverBudget
from .tools import ToolContext, ToolError, ToolRegistry, ToolSpec

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
