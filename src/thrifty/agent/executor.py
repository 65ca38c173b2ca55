"""Run a plan as a dataflow graph: each task starts the moment its inputs exist.

Dispatch happens in the completion path of the task that just finished (no
level barriers, no polling). Under a concurrency cap the ready task with the
longest estimated remaining path (its own duration plus the longest chain of
dependents after it) goes first. A task's duration is its own estimate (from
the plan, or from its tool given the arguments) or else its tool's average,
learned as tasks run; :mod:`.ranking` keeps priorities current at O(log n) per
task whatever the size of the graph.

Sync tools run in threads and CPU tools in a killable :class:`Sandbox`
worker, so nothing but coroutines runs on the event loop and every timeout
holds. Failures stay local: a failed task fails its dependents, or runs their
fallback, while independent branches carry on.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor as PoolExecutor
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..dispatch import Dispatcher
from ..retry import RetrySettings
from .durations import Durations
from .plan import Task, find_refs, resolve, topological_order
from .ranking import Ranking
from .sandbox import Sandbox
from .tools import ToolContext, ToolError, ToolRegistry, ToolSpec

log = logging.getLogger(__name__)


class State(enum.Enum):
    WAITING = "waiting"
    READY = "ready"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (State.DONE, State.FAILED, State.CANCELLED)


class TaskTimeout(ToolError):
    code = "tool_timeout"


class DependencyFailed(ToolError):
    code = "dependency_failed"


@dataclass(slots=True)
class TaskRun:
    """One task's life: state, result or error, and when things happened (s since start)."""

    task: Task
    state: State = State.WAITING
    result: Any = None
    error: BaseException | None = None
    added: float = 0.0
    ready_at: float | None = None
    started: float | None = None
    ended: float | None = None
    attempts: int = 0
    used_fallback: bool = False
    failed_deps: set[int] = field(default_factory=set)

    @property
    def id(self) -> int:
        return self.task.id

    @property
    def duration(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return self.ended - self.started


EventHook = Callable[[TaskRun], None]


class Executor:
    """Runs tasks added while it runs (streamed plans) or all at once.

    ``results`` carries earlier rounds' results (replans keep one id space).
    ``threads`` (sync tools) and ``sandbox`` (process tools) may be shared;
    when not given, the executor makes its own and :meth:`aclose` closes them.
    """

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        context: ToolContext | None = None,
        cap: int | None = None,
        durations: Durations | None = None,
        results: Mapping[int, Any] | None = None,
        retries: int | None = None,
        timeout_s: float | None = None,
        backoff_s: float = 0.05,
        on_event: EventHook | None = None,
        threads: PoolExecutor | None = None,
        sandbox: Sandbox | None = None,
        origin: float | None = None,
    ) -> None:
        if cap is not None and cap < 1:
            raise ValueError("cap must be at least 1")
        self.registry = registry
        self.context = context or ToolContext()
        self.cap = cap
        self.durations = durations or Durations()
        self.results: dict[int, Any] = dict(results or {})
        self.retries = retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        # the project's one retry rule: full-jitter backoff, Retry-After honoured
        self._backoff = RetrySettings(backoff_base=backoff_s)
        self._rng = random.Random()
        self.on_event = on_event
        self._threads, self._own_threads = threads, threads is None
        self._sandbox, self._own_sandbox = sandbox, sandbox is None
        self.runs: dict[int, TaskRun] = {}
        self.overhead_s = 0.0
        # times in TaskRun are seconds since ``origin`` (a perf_counter value; default: now)
        self._t0 = time.perf_counter() if origin is None else origin
        self._children: dict[int, list[int]] = {}
        self._pending: dict[int, int] = {}
        self._ranking = Ranking(registry, self.durations, self._children)
        self._slots = Dispatcher(self._ranking, self._start_id, lambda: self.cap)
        self._open = 0
        self._closed = False
        self._hold = False
        self._aio: dict[int, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._warming: set[str] = set()
        self._done: asyncio.Future[None] | None = None

    def now(self) -> float:
        return time.perf_counter() - self._t0

    # --- feeding the graph ---------------------------------------------------

    def add(self, task: Task) -> TaskRun:
        """Add one task, checked by a PlanBuilder, whose dependencies were added before it."""
        t = time.perf_counter()
        run = TaskRun(task=task, added=t - self._t0)
        self.runs[task.id] = run
        self._children[task.id] = []
        self._open += 1
        self._warm(task)
        pending = 0
        for dep in task.deps:
            if dep in self.results:
                continue
            dep_run = self.runs.get(dep)
            if dep_run is None or dep_run.state in (State.FAILED, State.CANCELLED):
                run.failed_deps.add(dep)
            elif dep_run.state is not State.DONE:
                self._children[dep].append(task.id)
                pending += 1
        self._pending[task.id] = pending
        self._ranking.add(task, propagate=not self._hold)
        if run.failed_deps and task.fallback is None:
            self._fail(run, DependencyFailed(f"input ${min(run.failed_deps)} failed"))
        elif pending == 0:
            self._make_ready(run)
        if not self._hold:
            self._dispatch()
        self.overhead_s += time.perf_counter() - t
        return run

    def add_all(self, tasks: Iterable[Task]) -> None:
        """Add a whole plan, in dependency order whatever order it was written in."""
        by_id = {t.id: t for t in tasks}
        self._hold = True
        try:
            for tid in topological_order(by_id):
                self.add(by_id[tid])
        finally:
            self._hold = False
        t = time.perf_counter()
        self._ranking.rank_all()
        self._dispatch()
        self.overhead_s += time.perf_counter() - t

    def close(self) -> None:
        """No more tasks this round; ``wait()`` returns once every task has ended."""
        self._closed = True
        self._check_done()

    async def wait(self) -> dict[int, TaskRun]:
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            self._check_done()
        try:
            await self._done
        except asyncio.CancelledError:
            self.cancel_all()
            raise
        return self.runs

    async def run(self, tasks: Iterable[Task]) -> dict[int, TaskRun]:
        """Add ``tasks``, close, and wait for all of them."""
        self.add_all(tasks)
        self.close()
        return await self.wait()

    # --- cancellation ----------------------------------------------------------

    def cancel(self, task_id: int) -> list[int]:
        """Cancel a task and everything that depends on it; returns the ids cancelled."""
        subtree, stack = [], [task_id]
        while stack:
            tid = stack.pop()
            run = self.runs.get(tid)
            if run is None or run.state.terminal or tid in subtree:
                continue
            subtree.append(tid)
            stack.extend(self._children[tid])
        for tid in subtree:
            run = self.runs[tid]
            aio = self._aio.get(tid)
            if run.state is State.RUNNING and aio is not None:
                aio.cancel()
            else:
                run.state = State.CANCELLED
                run.ended = self.now()
                self._ranking.leave(run.task)
                self._open -= 1
                self._emit(run)
        self._check_done()
        return subtree

    def cancel_all(self) -> None:
        for tid in list(self.runs):
            self.cancel(tid)

    async def aclose(self) -> None:
        """Cancel what still runs and shut down the pools this executor made."""
        self.cancel_all()
        for task in list(self._aio.values()) + list(self._background):
            if not task.done():
                await asyncio.gather(task, return_exceptions=True)
        if self._own_threads and self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        if self._own_sandbox and self._sandbox is not None:
            await self._sandbox.aclose()

    # --- scheduling ------------------------------------------------------------

    def estimate_s(self, task_id: int) -> float:
        """The duration the scheduler assumes for a waiting or ready task."""
        return self._ranking.estimate_s(task_id)

    def remaining_s(self, task_id: int) -> float:
        """A waiting or ready task's priority: its estimated remaining path (itself included)."""
        return self._ranking.remaining_s(task_id)

    def _make_ready(self, run: TaskRun) -> None:
        run.state = State.READY
        run.ready_at = self.now()
        self._ranking.ready(run.id)

    def _dispatch(self) -> None:
        self._slots.pump()

    def _start_id(self, task_id: int) -> None:
        run = self.runs[task_id]
        run.state = State.RUNNING
        self._ranking.leave(run.task)
        run.started = self.now()
        aio = asyncio.get_running_loop().create_task(self._execute(run))
        aio.add_done_callback(lambda _: self._on_done(run))
        self._aio[run.id] = aio
        self._emit(run)

    def _on_done(self, run: TaskRun) -> None:
        try:
            self._settle(run)
        except Exception as exc:  # a bug here must end the run, not hang it
            if self._done is not None and not self._done.done():
                self._done.set_exception(exc)

    def _settle(self, run: TaskRun) -> None:
        """A running task ended: record it, wake or fail its dependents, dispatch."""
        t = time.perf_counter()
        self._slots.release()
        self._ranking.finished()
        self._aio.pop(run.id, None)
        if run.state is State.RUNNING:  # cancelled before its coroutine ever ran
            run.state = State.CANCELLED
        if run.ended is None:
            run.ended = self.now()
        if run.state is State.DONE:
            self.results[run.id] = run.result
        self._open -= 1
        self._emit(run)
        self._notify_children(run)
        self._dispatch()
        self._check_done()
        self.overhead_s += time.perf_counter() - t

    def _notify_children(self, run: TaskRun) -> None:
        for cid in self._children[run.id]:
            child = self.runs[cid]
            if child.state.terminal:
                continue
            if run.state is not State.DONE:
                child.failed_deps.add(run.id)
                if child.task.fallback is None:
                    self._fail(child, DependencyFailed(f"input ${run.id} ({run.task.tool}) failed"))
                    continue
            self._pending[cid] -= 1
            if self._pending[cid] == 0:
                self._make_ready(child)

    def _fail(self, run: TaskRun, error: BaseException) -> None:
        """Fail a task that never started, and (transitively) its dependents."""
        run.state = State.FAILED
        run.error = error
        run.ended = self.now()
        self._ranking.leave(run.task)
        self._open -= 1
        self._emit(run)
        self._notify_children(run)

    def _check_done(self) -> None:
        if self._closed and self._open == 0 and self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _emit(self, run: TaskRun) -> None:
        if self.on_event is not None:
            try:
                self.on_event(run)
            except Exception:
                log.exception("the executor's event hook failed; it is switched off")
                self.on_event = None

    def _warm(self, task: Task) -> None:
        """Start importing the tool's module (or a sandbox worker) now, before its inputs are ready."""
        if self.registry.spec(task.tool).kind == "process":
            self._sandbox_for().prestart()
            return
        if self.registry.is_loaded(task.tool) or task.tool in self._warming:
            return
        self._warming.add(task.tool)
        bg = asyncio.get_running_loop().create_task(self.registry.preload([task.tool]))
        self._background.add(bg)
        bg.add_done_callback(self._background.discard)

    # --- running one task ------------------------------------------------------

    async def _execute(self, run: TaskRun) -> None:
        task = run.task
        try:
            if run.failed_deps:
                run.result = await self._fallback(run)
            else:
                try:
                    run.result = await self._attempts(run, task.tool, task.args, task.ref_args)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    if task.fallback is None:
                        raise
                    run.result = await self._fallback(run)
            run.state = State.DONE
        except asyncio.CancelledError:
            run.state = State.CANCELLED
        except Exception as exc:
            run.state = State.FAILED
            run.error = exc
        finally:
            run.ended = self.now()

    async def _fallback(self, run: TaskRun) -> Any:
        fallback = run.task.fallback
        assert fallback is not None
        run.used_fallback = True
        if fallback.tool is None:
            return fallback.value
        missing = {d for d in find_refs(dict(fallback.args), self.runs) if d not in self.results}
        if missing:
            raise DependencyFailed(f"the fallback's input ${min(missing)} failed")
        refs = [k for k, v in fallback.args.items() if find_refs(v, self.results)]
        return await self._attempts(run, fallback.tool, fallback.args, refs)

    async def _attempts(self, run: TaskRun, tool: str, raw: Mapping[str, Any], refs: Iterable[str]) -> Any:
        """Call ``tool`` with retries under the task's timeout; ``refs``: argument names to resolve."""
        spec = self.registry.spec(tool)
        fn: str | Callable[..., Any] = spec.target  # a process tool is imported in its worker, not here
        if spec.kind != "process":
            if not self.registry.is_loaded(tool):
                await self.registry.preload([tool])
            fn = self.registry.load(tool)
        args = dict(raw)
        if refs:
            for key in refs:
                args[key] = resolve(args[key], self.results)
            args = self.registry.prepare(tool, args, refs)
        retries = spec.retries if self.retries is None else self.retries
        limit = run.task.timeout_s or self.timeout_s or spec.timeout_s
        for attempt in range(retries + 1):
            run.attempts += 1
            t = time.perf_counter()
            try:
                async with asyncio.timeout(limit):
                    result = await self._call(spec, fn, args)
            except TimeoutError:
                raise TaskTimeout(f"{tool} timed out after {limit:g}s") from None
            except Exception as exc:
                if not getattr(exc, "retryable", False) or attempt == retries:
                    raise
                wait = self._backoff.delay(attempt, self._rng, getattr(exc, "retry_after", None))
                if wait is None:  # the tool's upstream asked for a longer wait than is worth holding
                    raise
                await asyncio.sleep(wait)
                continue
            self._learn(tool, time.perf_counter() - t)
            return result
        raise AssertionError("unreachable")

    def _learn(self, tool: str, seconds: float) -> None:
        self._ranking.learned(tool, self.durations.observe(tool, seconds))

    def _sandbox_for(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox()
        return self._sandbox

    async def _call(self, spec: ToolSpec, fn: str | Callable[..., Any], args: dict[str, Any]) -> Any:
        """One call: coroutines on the loop, plain functions in a thread, process tools in the sandbox."""
        if spec.kind == "process":
            return await self._sandbox_for().call(fn, args, memory_mb=spec.memory_mb)
        assert callable(fn)
        call = functools.partial(fn, self.context, **args) if spec.context else functools.partial(fn, **args)
        if spec.kind == "async" and inspect.iscoroutinefunction(fn):
            return await call()
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=16, thread_name_prefix="thrifty-tool")
        result = await asyncio.get_running_loop().run_in_executor(self._threads, call)
        if inspect.isawaitable(result):  # a plain function that returned a coroutine
            result = await result
        return result
