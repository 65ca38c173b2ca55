"""The task manager: bounded, prioritised, retried, cancellable work.

Submit any callable (a coroutine function for I/O-bound work, a blocking
function for the thread pool, a picklable function for the process pool) or
an LLM call through any :class:`~thrifty.backend.Backend`; get a
:class:`Task` back, which is awaitable and cancellable.

    async with TaskManager(concurrency=16, model_limits={"gpt-4o-mini": 4}) as tm:
        tasks = [tm.submit_chat(gateway, chat(q)) for q in questions]
        async for task in tm.as_completed(tasks):
            print(task.result().text)

A task starts when a slot is free under the global limit and under its
model's limit; among the tasks that could start, the highest priority
(then the oldest) goes first. A failure whose error is retryable is tried
again after a backoff (:mod:`thrifty.retry`: full jitter, a 429's
``retry_after`` honoured), up to ``retries`` times, before the task's
``timeout`` runs out.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import inspect
import itertools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, nullcontext
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from ..dispatch import Dispatcher
from ..errors import RateLimited, ThriftyError, UpstreamTimeout
from ..retry import RetrySettings
from .limits import FixedLimit, Limit, Outcome

if TYPE_CHECKING:
    from ..backend import Backend
    from ..types import ChatRequest, ChatResponse

T = TypeVar("T")
Kind = Literal["async", "thread", "process"]
KINDS: tuple[Kind, ...] = ("async", "thread", "process")


class DeadlineExceeded(ThriftyError):
    """A task's timeout ran out, queued or running; not retried."""

    status = 504
    type = "timeout_error"
    code = "deadline_exceeded"


class State(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Task(Generic[T]):
    """A handle on submitted work: await it, cancel it, read its state."""

    def __init__(
        self,
        manager: TaskManager,
        seq: int,
        call: Callable[[], Any],
        kind: Kind,
        *,
        name: str,
        priority: int,
        model: str | None,
        deadline: float | None,
        retries: int,
    ) -> None:
        self._manager = manager
        self.seq = seq
        self.name = name
        self.kind = kind
        self.priority = priority
        self.model = model
        self.deadline = deadline  # in the event loop's clock
        self.retries = retries
        self.attempts = 0
        self.started = 0.0  # manager clock at the start of the latest attempt
        self.state = State.QUEUED
        self.future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._call = call
        self._runner: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Task {self.name} {self.state.value}>"

    def __await__(self) -> Any:
        return self.future.__await__()

    def done(self) -> bool:
        return self.future.done()

    def cancelled(self) -> bool:
        return self.future.cancelled()

    def result(self) -> T:
        return self.future.result()

    def exception(self) -> BaseException | None:
        return self.future.exception()

    def cancel(self) -> bool:
        """Cancel the task, queued or running; False if it had already finished."""
        return self._manager._cancel(self)


def is_overload(exc: BaseException) -> bool:
    """Errors that mean the upstream is saturated: a limit should back off."""
    return isinstance(exc, (RateLimited, UpstreamTimeout, TimeoutError))


class TaskManager:
    """Runs submitted tasks under a global limit and per-model limits."""

    def __init__(
        self,
        *,
        concurrency: int | Limit = 64,
        model_limits: Mapping[str, int | Limit] | None = None,
        threads: int = 8,
        processes: int | None = None,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        max_retry_after_s: float = 300.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = _as_limit(concurrency)
        self.model_limits = {m: _as_limit(v) for m, v in (model_limits or {}).items()}
        # the shared retry rule; how many retries is each task's own
        self.backoff = RetrySettings(
            backoff_base=retry_base_s, backoff_max=retry_max_s, max_retry_after=max_retry_after_s
        )
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock = clock
        self._threads_n = threads
        self._processes_n = processes
        self._executors: dict[Kind, Executor] = {}
        self._queues = ModelQueues(self.model_limits)
        self._slots = Dispatcher(self._queues, self._start, lambda: self.limit.limit)
        self._tasks: set[Task[Any]] = set()
        self._waiters: set[asyncio.Task[None]] = set()
        self._seq = itertools.count()
        self._closed = False
        self.finished = 0
        self.failed = 0

    # -- submitting ------------------------------------------------------------

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        kind: Kind = "async",
        priority: int = 0,
        timeout: float | None = None,
        retries: int = 0,
        model: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> Task[Any]:
        """Queue ``fn(*args, **kwargs)``; higher ``priority`` starts first."""
        if self._closed:
            raise RuntimeError("the task manager is closed")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        seq = next(self._seq)
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        call = functools.partial(fn, *args, **kwargs)
        task: Task[Any] = Task(
            self,
            seq,
            call,
            kind,
            name=name or f"task-{seq}",
            priority=priority,
            model=model,
            deadline=deadline,
            retries=retries,
        )
        self._tasks.add(task)
        task.future.add_done_callback(lambda _f: self._tasks.discard(task))
        self._enqueue(task)
        if deadline is not None:
            asyncio.get_running_loop().call_at(deadline, self._expire, task)
        self._pump()
        return task

    def submit_chat(
        self,
        backend: Backend,
        request: ChatRequest,
        *,
        priority: int = 0,
        timeout: float | None = None,
        retries: int = 2,
        name: str | None = None,
    ) -> Task[ChatResponse]:
        """Queue one LLM call through ``backend``, limited by ``request.model``."""
        return self.submit(
            backend.complete,
            request,
            priority=priority,
            timeout=timeout,
            retries=retries,
            model=request.model,
            name=name,
        )

    # -- results ---------------------------------------------------------------

    async def as_completed(self, tasks: Iterable[Task[Any]] | None = None) -> AsyncIterator[Task[Any]]:
        """Yield tasks as they finish (done, failed or cancelled)."""
        pending = list(self._tasks if tasks is None else tasks)
        done: asyncio.Queue[Task[Any]] = asyncio.Queue()
        for task in pending:
            task.future.add_done_callback(functools.partial(_put, done, task))
        for _ in range(len(pending)):
            yield await done.get()

    async def join(self) -> None:
        """Wait until every submitted task has finished."""
        while self._tasks:
            await asyncio.wait([t.future for t in list(self._tasks)])

    @property
    def running(self) -> int:
        return self._slots.running

    @property
    def queued(self) -> int:
        return sum(1 for t in self._tasks if t.state is State.QUEUED)

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> TaskManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self, *, cancel: bool = True) -> None:
        """Stop: cancel what is left (or wait for it), then shut the pools."""
        if not cancel:
            await self.join()
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for waiter in self._waiters:
            waiter.cancel()
        runners = [t._runner for t in list(self._tasks) if t._runner is not None]
        await asyncio.gather(*runners, *self._waiters, return_exceptions=True)
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        self._executors.clear()

    def executor(self, kind: Kind) -> Executor:
        """The pool for ``thread`` or ``process`` work, created on first use."""
        pool = self._executors.get(kind)
        if pool is None:
            if kind == "thread":
                pool = ThreadPoolExecutor(self._threads_n, thread_name_prefix="thrifty-task")
            else:
                import multiprocessing

                pool = ProcessPoolExecutor(self._processes_n, mp_context=multiprocessing.get_context("spawn"))
            self._executors[kind] = pool
        return pool

    # -- scheduling ------------------------------------------------------------

    def _enqueue(self, task: Task[Any]) -> None:
        task.state = State.QUEUED
        self._queues.push(task)

    def _pump(self) -> None:
        self._slots.pump()

    def _start(self, task: Task[Any]) -> None:
        """The dispatcher gave ``task`` a slot: run it (or fail it, if its deadline has passed)."""
        loop = asyncio.get_running_loop()
        if task.deadline is not None and loop.time() >= task.deadline:
            self._release(task, None, observe=False)
            self._finish(task, DeadlineExceeded(f"{task.name}: timed out before it could start"))
            return
        task.state = State.RUNNING
        task.attempts += 1
        task.started = self._clock()
        runner = loop.create_task(self._run(task), name=task.name)
        runner.add_done_callback(functools.partial(self._runner_done, task))
        task._runner = runner

    def _release(self, task: Task[Any], error: BaseException | None, *, observe: bool = True) -> None:
        self._slots.release()
        self._queues.release(task.model)
        if not observe:
            return
        latency = self._clock() - task.started
        if error is None:
            outcome = Outcome.OK
        elif is_overload(error):
            outcome = Outcome.OVERLOAD
        else:
            outcome = Outcome.ERROR
        self.limit.observe(latency, outcome)
        model_limit = self.model_limits.get(task.model) if task.model is not None else None
        if model_limit is not None:
            model_limit.observe(latency, outcome)

    # -- running ---------------------------------------------------------------

    async def _execute(self, task: Task[Any]) -> Any:
        if task.kind == "async":
            result = task._call()
            if inspect.isawaitable(result):
                result = await result
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor(task.kind), task._call)

    async def _run(self, task: Task[Any]) -> None:
        scope: AbstractAsyncContextManager[Any] = (
            nullcontext() if task.deadline is None else asyncio.timeout_at(task.deadline)
        )
        error: BaseException | None = None
        result: Any = None
        try:
            async with scope:
                result = await self._execute(task)
        except TimeoutError as exc:
            expired = isinstance(scope, asyncio.Timeout) and scope.expired()
            error = DeadlineExceeded(f"{task.name}: timed out while running") if expired else exc
        except Exception as exc:
            error = exc
        self._release(task, error)
        if error is not None and self._should_retry(task, error):
            self._retry_later(task, error)
        else:
            self._finish(task, error, result)
        self._pump()

    def _runner_done(self, task: Task[Any], runner: asyncio.Task[None]) -> None:
        """A cancelled runner (even one cancelled before it began) frees its slot here."""
        if runner.cancelled():
            self._release(task, None, observe=False)
            self._finish_cancelled(task)
            if not self._closed:
                self._pump()

    def _should_retry(self, task: Task[Any], error: BaseException) -> bool:
        if self._closed or task.attempts > task.retries:
            return False
        return bool(getattr(error, "retryable", False))

    def _backoff(self, task: Task[Any], error: BaseException) -> float | None:
        """Seconds before the next try (None: the upstream asks for too long a wait)."""
        after = error.retry_after if isinstance(error, RateLimited) else None
        return self.backoff.delay(task.attempts - 1, self._rng, after)

    def _retry_later(self, task: Task[Any], error: BaseException) -> None:
        delay = self._backoff(task, error)
        loop = asyncio.get_running_loop()
        if delay is None or (task.deadline is not None and loop.time() + delay >= task.deadline):
            self._finish(task, error)
            return
        task.state = State.QUEUED
        task._runner = None

        async def wait_then_queue() -> None:
            await self._sleep(delay)
            if task.state is State.QUEUED and not self._closed:
                self._enqueue(task)
                self._pump()

        waiter = loop.create_task(wait_then_queue())
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)

    def _expire(self, task: Task[Any]) -> None:
        """A task still waiting (queued or between retries) when its deadline comes fails now."""
        if task.state is State.QUEUED and not task.future.done():
            self._finish(task, DeadlineExceeded(f"{task.name}: timed out before it could start"))

    def _finish(self, task: Task[Any], error: BaseException | None, result: Any = None) -> None:
        if task.future.done():
            return
        task._runner = None
        if error is None:
            task.state = State.DONE
            task.future.set_result(result)
            self.finished += 1
        else:
            task.state = State.FAILED
            task.future.set_exception(error)
            self.failed += 1

    def _finish_cancelled(self, task: Task[Any]) -> None:
        task.state = State.CANCELLED
        task._runner = None
        if not task.future.done():
            task.future.cancel()

    def _cancel(self, task: Task[Any]) -> bool:
        if task.future.done():
            return False
        if task.state is State.RUNNING and task._runner is not None:
            task._runner.cancel()
            task.state = State.CANCELLED  # the runner frees the slot when it stops
            return True
        self._finish_cancelled(task)  # queued (or waiting to retry): dropped from its heap lazily
        return True


def _put(queue: asyncio.Queue[Task[Any]], task: Task[Any], _future: object) -> None:
    queue.put_nowait(task)


def _as_limit(value: int | Limit) -> Limit:
    return FixedLimit(value) if isinstance(value, int) else value


class ModelQueues:
    """The task manager's order: the highest priority, then the oldest, among the
    queued tasks whose model is under its own limit (one heap per model)."""

    def __init__(self, limits: Mapping[str, Limit]) -> None:
        self._limits = limits
        self._heaps: dict[str | None, list[tuple[int, int, Task[Any]]]] = {}
        self._running: dict[str | None, int] = {}

    def push(self, task: Task[Any]) -> None:
        heapq.heappush(self._heaps.setdefault(task.model, []), (-task.priority, task.seq, task))

    def pop(self, free: int | None) -> Task[Any] | None:
        best: tuple[int, int, Task[Any]] | None = None
        for model, heap in self._heaps.items():
            while heap and heap[0][2].state is not State.QUEUED:
                heapq.heappop(heap)  # cancelled or expired while queued
            if heap and self._model_free(model) and (best is None or heap[0][:2] < best[:2]):
                best = heap[0]
        if best is None:
            return None
        task = best[2]
        heapq.heappop(self._heaps[task.model])
        self._running[task.model] = self._running.get(task.model, 0) + 1
        return task

    def release(self, model: str | None) -> None:
        self._running[model] -= 1

    def _model_free(self, model: str | None) -> bool:
        limit = self._limits.get(model) if model is not None else None
        return limit is None or self._running.get(model, 0) < limit.limit
