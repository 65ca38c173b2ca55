"""The agent loop: plan (streamed) -> run the graph -> join, replanning when asked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..backend import Backend
from ..errors import ThriftyError
from ..types import ChatRequest, parsed
from .durations import Durations
from .executor import EventHook, Executor, TaskRun
from .parse import PlanBuilder, parse_stream, parse_tool_calls
from .plan import PlanError
from .prompts import describe_runs, join_messages, plan_messages, read_verdict
from .sandbox import Sandbox
from .tools import ToolContext, ToolRegistry

Planner = Literal["text", "tool_calls"]


@dataclass(slots=True)
class AgentResult:
    """The answer, every task that ran (all rounds, one id space) and how it went."""

    answer: str
    tasks: list[TaskRun] = field(default_factory=list)
    replans: int = 0
    error: str | None = None
    plans: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    scheduling_overhead_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class _Round:
    runs: list[TaskRun]
    plan_text: str
    overhead_s: float
    problem: str | None = None


async def run_agent(
    question: str,
    backend: Backend,
    *,
    model: str,
    tools: ToolRegistry | None = None,
    context: ToolContext | None = None,
    cap: int | None = None,
    max_replans: int = 2,
    durations: Durations | None = None,
    examples: Iterable[str] = (),
    on_event: EventHook | None = None,
    planner_timeout_s: float = 120.0,
    joiner_model: str | None = None,
    planner: Planner = "text",
) -> AgentResult:
    """Answer ``question`` by planning tool calls with ``model`` and running them as a graph.

    ``planner="text"`` streams LLMCompiler's plan format (tasks start while the
    planner writes); ``"tool_calls"`` asks for native function calls instead.
    Plan errors, planner failures and the joiner's requests all lead to a new
    plan (up to ``max_replans``) that sees every earlier task and result; when
    none are left the result carries ``error`` and the run ends.
    """
    from .builtin import default_registry

    agent = _Agent(
        backend=backend,
        model=model,
        registry=tools if tools is not None else default_registry(),
        context=context or ToolContext(backend=backend, model=model),
        cap=cap,
        durations=durations or Durations(),
        examples=tuple(examples),
        on_event=on_event,
        planner_timeout_s=planner_timeout_s,
        joiner_model=joiner_model or model,
        planner=planner,
    )
    return await agent.run(question, max_replans)


@dataclass(slots=True)
class _Agent:
    backend: Backend
    model: str
    registry: ToolRegistry
    context: ToolContext
    cap: int | None
    durations: Durations
    examples: tuple[str, ...]
    on_event: EventHook | None
    planner_timeout_s: float
    joiner_model: str
    planner: Planner
    results: dict[int, Any] = field(default_factory=dict)
    origin: float = field(default_factory=time.perf_counter)
    sandbox: Sandbox = field(default_factory=Sandbox)  # CPU tools' workers, kept across rounds

    async def run(self, question: str, max_replans: int) -> AgentResult:
        started = self.origin = time.perf_counter()
        result = AgentResult(answer="")
        warm = asyncio.create_task(self.registry.preload(self.registry.triggered_by(question)))
        history = ""
        try:
            for round_no in range(max_replans + 1):
                result.replans = round_no
                rnd = await self._round(question, {r.id for r in result.tasks}, history)
                result.tasks.extend(rnd.runs)
                result.plans.append(rnd.plan_text)
                result.scheduling_overhead_s += rnd.overhead_s
                problem = rnd.problem or await self._join(question, result)
                if problem is None:
                    return result
                result.error = problem
                history = f"Earlier tasks:\n{describe_runs(result.tasks)}\n\nProblem: {problem}"
            return result
        finally:
            await asyncio.gather(warm, return_exceptions=True)
            await self.sandbox.aclose()
            result.elapsed_s = time.perf_counter() - started

    async def _round(self, question: str, earlier: set[int], history: str) -> _Round:
        """One round: stream the plan into the executor, wait for every task."""
        builder = PlanBuilder(self.registry, earlier=earlier)
        messages = plan_messages(
            question,
            self.registry,
            start=builder.next_id,
            examples=self.examples,
            history=history,
            native=self.planner == "tool_calls",
        )
        request = ChatRequest(model=self.model, messages=messages, params={"temperature": 0})
        request.trace.note("agent", "planner")
        executor = Executor(
            self.registry,
            context=self.context,
            cap=self.cap,
            durations=self.durations,
            results=self.results,
            on_event=self.on_event,
            sandbox=self.sandbox,
            origin=self.origin,
        )
        text: list[str] = []
        problem = None
        try:
            async with asyncio.timeout(self.planner_timeout_s):
                if self.planner == "tool_calls":
                    await self._plan_by_tool_calls(request, builder, executor, text)
                else:
                    await self._plan_by_text(request, builder, executor, text)
        except PlanError as exc:
            problem = f"the plan was invalid: {exc.message}"
        except TimeoutError:
            problem = f"the planner did not finish within {self.planner_timeout_s:g}s"
        except ThriftyError as exc:
            problem = f"the planner failed: {exc.message}"
        if problem is not None:
            executor.cancel_all()
        executor.close()
        try:
            runs = await executor.wait()
        finally:
            await executor.aclose()
        self.results.update(executor.results)
        return _Round(list(runs.values()), "".join(text), executor.overhead_s, problem)

    async def _plan_by_text(
        self, request: ChatRequest, builder: PlanBuilder, executor: Executor, text: list[str]
    ) -> None:
        """Stream the plan text; each task starts as soon as its line is complete."""
        deltas = _deltas(self.backend, request, text)
        async with contextlib.aclosing(deltas):
            async for task in parse_stream(deltas, builder):
                executor.add(task)

    async def _plan_by_tool_calls(
        self, request: ChatRequest, builder: PlanBuilder, executor: Executor, text: list[str]
    ) -> None:
        """Ask for native tool calls (all run as one graph; ``$N`` arguments link them)."""
        request.params["tools"] = [spec.openai_schema() for spec in self.registry]
        request.params["parallel_tool_calls"] = True
        response = await self.backend.complete(request)
        calls = response.tool_calls
        text.append(json.dumps(calls) if calls else response.text)
        executor.add_all(parse_tool_calls(calls, builder))

    async def _join(self, question: str, result: AgentResult) -> str | None:
        """Ask the joiner; sets the answer, or returns why a new plan is needed."""
        messages = join_messages(question, result.tasks)
        request = ChatRequest(model=self.joiner_model, messages=messages, params={"temperature": 0})
        request.trace.note("agent", "joiner")
        try:
            response = await self.backend.complete(request)
        except ThriftyError as exc:
            return f"the joiner failed: {exc.message}"
        verdict = read_verdict(response.text)
        if verdict.answer is None:
            return f"the joiner asked for a new plan: {verdict.replan}"
        result.answer = verdict.answer
        result.error = None
        return None


async def _deltas(backend: Backend, request: ChatRequest, sink: list[str]) -> AsyncGenerator[str, None]:
    """The planner's text as it streams, also kept in ``sink``."""
    async for chunk in backend.stream(request):
        for choice in parsed(chunk).get("choices") or ():
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                sink.append(piece)
                yield piece
