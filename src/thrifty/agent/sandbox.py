"""Killable worker processes for CPU tools: a time and memory budget that always holds.

Tools of kind ``process`` run here, one call at a time per worker, in a small
pool of persistent child processes (started with ``spawn``, so the event loop's
threads are never forked). A worker is only ever stopped from outside:

- **time**: the caller awaits the call under its timeout; when the wait is
  cancelled (timeout or a cancelled task) the worker is killed and a fresh one
  takes its place on the next call. Pure-Python loops cannot hold it up.
- **memory**: while a call runs, the worker's address space is capped with
  ``RLIMIT_AS``; an allocation past the budget fails inside the worker, the
  call fails with :class:`ToolOverBudget`, and the worker is replaced.
- **result size**: a result whose pickle is larger than ``result_bytes`` is
  refused in the worker rather than sent.

A worker that dies (a crash, ``os._exit``, the kernel's OOM killer) fails its
call with :class:`ToolCrashed` and is replaced too.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import pickle
import signal
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .tools import ToolError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

try:
    import resource
except ImportError:  # not on Windows: no memory budget there, only the time limit
    resource = None  # type: ignore[assignment]

_OK, _ERROR, _MEMORY, _TOO_BIG = "ok", "error", "memory", "too_big"


class ToolOverBudget(ToolError):
    """The call needed more memory than its budget, or returned too large a result."""

    code = "tool_over_budget"


class ToolCrashed(ToolError):
    """The worker process running the call died."""

    code = "tool_crashed"


class Sandbox:
    """A pool of up to ``workers`` child processes that run picklable tool functions.

    ``memory_mb`` is the default address-space budget of one call (a tool can
    ask for its own); ``result_bytes`` bounds a pickled result. Whoever builds a
    Sandbox closes it with :meth:`aclose`.
    """

    def __init__(self, workers: int = 2, *, memory_mb: int = 512, result_bytes: int = 16 << 20) -> None:
        if workers < 1:
            raise ValueError("a sandbox needs at least one worker")
        self.size = workers
        self.memory_mb = memory_mb
        self.result_bytes = result_bytes
        self.started = 0  # workers started, replacements included
        self.stopped = 0  # workers killed or lost mid-call
        self._ctx: Any = None  # multiprocessing loads on the first worker
        self._idle: list[_Worker] = []
        self._busy = 0
        self._slots: asyncio.Semaphore | None = None
        self._dying: list[_Worker] = []
        self._closed = False

    def prestart(self, n: int = 1) -> None:
        """Start up to ``n`` idle workers now, so a first call does not wait for one to boot."""
        while not self._closed and len(self._idle) < n and len(self._idle) + self._busy < self.size:
            self._idle.append(self._spawn())

    async def call(
        self, target: str | Callable[..., Any], args: Mapping[str, Any], *, memory_mb: int | None = None
    ) -> Any:
        """``target(**args)`` in a worker; cancel the await to stop it."""
        if self._closed:
            raise ToolError("the tool sandbox is closed")
        payload = _encode(target, args, (memory_mb or self.memory_mb) << 20, self.result_bytes)
        slots = self._semaphore()
        async with slots:
            self._reap()
            worker = self._idle.pop() if self._idle else self._spawn()
            self._busy += 1
            healthy = False
            try:
                worker.conn.send_bytes(payload)
                status, value = pickle.loads(await _receive(worker.conn))
                healthy = status != _MEMORY
            except (EOFError, OSError):
                worker.proc.join(timeout=0.5)  # it closed its end of the pipe: it is exiting
                raise ToolCrashed(f"the tool's worker process died (exit code {worker.proc.exitcode})") from None
            finally:
                self._busy -= 1
                if healthy and not self._closed:
                    self._idle.append(worker)
                else:  # timed out, cancelled, crashed, over budget: a fresh worker next time
                    self._stop(worker)
        if status == _OK:
            return value
        if status == _MEMORY:
            raise ToolOverBudget(f"the tool needed more than its memory budget of {memory_mb or self.memory_mb} MB")
        if status == _TOO_BIG:
            raise ToolOverBudget(f"the tool's result ({value:,} bytes) is larger than {self.result_bytes:,} bytes")
        raise value

    async def aclose(self) -> None:
        """Stop every worker and wait until they are gone."""
        self._closed = True
        for worker in self._idle:
            worker.conn.close()  # an idle worker exits on end of file
            self._dying.append(worker)
        self._idle.clear()
        dying, self._dying = self._dying, []
        for worker in dying:
            await asyncio.to_thread(worker.proc.join, 5)
            if worker.proc.is_alive():
                worker.proc.kill()
                await asyncio.to_thread(worker.proc.join, 5)

    # --- workers -----------------------------------------------------------------

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        return self._slots

    def _spawn(self) -> _Worker:
        if self._ctx is None:
            import multiprocessing

            self._ctx = multiprocessing.get_context("spawn")
        self.started += 1
        return _Worker(self._ctx)

    def _stop(self, worker: _Worker) -> None:
        if worker.proc.is_alive():
            worker.proc.kill()
            self.stopped += 1
        worker.conn.close()
        self._dying.append(worker)

    def _reap(self) -> None:
        """Collect the exit status of stopped workers (no zombies), without blocking."""
        for worker in list(self._dying):
            worker.proc.join(timeout=0)
            if not worker.proc.is_alive():
                self._dying.remove(worker)


class _Worker:
    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="thrifty-tool")
        self.proc.start()
        child.close()


def _encode(target: str | Callable[..., Any], args: Mapping[str, Any], memory: int, result_bytes: int) -> bytes:
    try:
        return pickle.dumps((target, dict(args), memory, result_bytes))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise ToolError(f"a process tool's function and arguments must be picklable: {exc}") from None


async def _receive(conn: Connection) -> bytes:
    """The next message, waiting on the event loop (no thread) where the loop allows it."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not readable.done():
            readable.set_result(None)

    try:
        loop.add_reader(conn.fileno(), wake)
    except NotImplementedError:  # a loop without readers (Windows' proactor)
        return await asyncio.to_thread(conn.recv_bytes)
    try:
        await readable
    finally:
        loop.remove_reader(conn.fileno())
    return conn.recv_bytes()  # the worker writes a whole (size-bounded) message at once


# --- inside the worker ----------------------------------------------------------


def _serve(conn: Connection) -> None:
    """A worker's life: run one call at a time until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops us
    functions: dict[str, Callable[..., Any]] = {}
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        conn.send_bytes(_run(functions, message))


def _run(functions: dict[str, Callable[..., Any]], message: bytes) -> bytes:
    try:
        target, args, memory, result_bytes = pickle.loads(message)
        fn = _function(functions, target)
        with _address_space(memory):
            value = fn(**args)
            out = pickle.dumps((_OK, value))
        del value
        if len(out) > result_bytes:
            return pickle.dumps((_TOO_BIG, len(out)))
        return out
    except MemoryError:
        return pickle.dumps((_MEMORY, None))
    except Exception as exc:
        return _error(exc)


def _function(functions: dict[str, Callable[..., Any]], target: str | Callable[..., Any]) -> Callable[..., Any]:
    if not isinstance(target, str):
        return target
    fn = functions.get(target)
    if fn is None:
        module, _, attr = target.partition(":")
        fn = functions[target] = getattr(importlib.import_module(module), attr)
    return fn


def _error(exc: Exception) -> bytes:
    """The tool's exception as it was, or as a ToolError carrying its text if it cannot travel."""
    try:
        out = pickle.dumps((_ERROR, exc))
        pickle.loads(out)
        return out
    except Exception:
        return pickle.dumps((_ERROR, ToolError(f"{type(exc).__name__}: {exc}")))


@contextlib.contextmanager
def _address_space(limit: int) -> Iterator[None]:
    """Cap the worker's address space while a call runs, and lift the cap after."""
    if resource is None or limit <= 0:
        yield
        return
    saved = resource.getrlimit(resource.RLIMIT_AS)
    hard = saved[1]
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, saved)
