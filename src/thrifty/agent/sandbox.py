"""Killable worker processes for CPU tools: a time and memory budget that always holds.

Tools of kind ``process`` run here, one call at a time per worker, in a small
pool of persistent child processes (``python -m thrifty.agent._worker``: a
fresh interpreter, so nothing of the parent's threads or ``__main__`` is
copied). A worker is only ever stopped from outside:

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
import os
import pickle
import sys
from collections.abc import Callable, Mapping
from typing import Any

from .tools import ToolError

# The wire between parent and worker: an 8-byte length, then a pickle. Replies are (status, value).
HEADER = 8
OK, ERROR, MEMORY, TOO_BIG = "ok", "error", "memory", "too_big"


class ToolOverBudget(ToolError):
    """The call needed more memory than its budget, or returned too large a result."""

    code = "tool_over_budget"


class ToolCrashed(ToolError):
    """The worker process running the call died."""

    code = "tool_crashed"


class Sandbox:
    """A pool of up to ``workers`` child processes that run picklable tool functions.

    ``memory_mb`` is the default address-space budget of one call (a tool can
    ask for its own); ``result_bytes`` bounds a pickled result. Tool functions
    are imported in the worker with the parent's ``sys.path``. Whoever builds a
    Sandbox closes it with :meth:`aclose`.
    """

    def __init__(self, workers: int = 2, *, memory_mb: int = 512, result_bytes: int = 16 << 20) -> None:
        if workers < 1:
            raise ValueError("a sandbox needs at least one worker")
        self.size = workers
        self.memory_mb = memory_mb
        self.result_bytes = result_bytes
        self.started = 0  # workers started, replacements included
        self.stopped = 0  # workers killed mid-call (timeout, cancellation) or lost
        self._idle: list[_Worker] = []
        self._busy = 0
        self._slots: asyncio.Semaphore | None = None
        self._dying: list[_Worker] = []
        self._closed = False

    def prestart(self, n: int = 1) -> None:
        """Start booting up to ``n`` workers now, so a first call does not wait for one."""
        while not self._closed and len(self._idle) < n and len(self._idle) + self._busy < self.size:
            self._idle.append(self._spawn())

    async def call(
        self, target: str | Callable[..., Any], args: Mapping[str, Any], *, memory_mb: int | None = None
    ) -> Any:
        """``target(**args)`` in a worker; cancel the await to stop it."""
        if self._closed:
            raise ToolError("the tool sandbox is closed")
        budget = memory_mb or self.memory_mb
        payload = _encode(target, args, budget << 20, self.result_bytes)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            worker = self._idle.pop() if self._idle else self._spawn()
            self._busy += 1
            healthy = False
            try:
                status, value = pickle.loads(await worker.ask(payload))
                healthy = status != MEMORY
            except (asyncio.IncompleteReadError, ConnectionError):
                code = await worker.exit_code()
                raise ToolCrashed(f"the tool's worker process died (exit code {code})") from None
            except OSError as exc:
                raise ToolCrashed(f"the tool's worker process could not start: {exc}") from None
            finally:
                self._busy -= 1
                if healthy and not self._closed:
                    self._idle.append(worker)
                else:  # timed out, cancelled, crashed, over budget: a fresh worker next time
                    self._stop(worker)
        if status == OK:
            return value
        if status == MEMORY:
            raise ToolOverBudget(f"the tool needed more than its memory budget of {budget} MB")
        if status == TOO_BIG:
            raise ToolOverBudget(
                f"the tool's result ({value:,} bytes) is larger than {self.result_bytes:,} bytes"
            )
        raise value

    async def aclose(self) -> None:
        """Stop every worker and wait until they are gone."""
        self._closed = True
        for worker in self._idle:
            worker.close()  # an idle worker exits at the end of its input
            self._dying.append(worker)
        self._idle.clear()
        dying, self._dying = self._dying, []
        for worker in dying:
            await worker.wait()

    def _spawn(self) -> _Worker:
        self.started += 1
        return _Worker()

    def _stop(self, worker: _Worker) -> None:
        if worker.kill():
            self.stopped += 1
        self._dying = [w for w in self._dying if not w.exited]
        self._dying.append(worker)


class _Worker:
    """One child process; it boots in the background while the first call is sent."""

    def __init__(self) -> None:
        path = os.pathsep.join(p for p in sys.path if p)
        env = dict(os.environ, PYTHONPATH=path)
        self._boot = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "thrifty.agent._worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
        )
        self._killed = False

    async def ask(self, payload: bytes) -> bytes:
        proc = await asyncio.shield(self._boot)  # a cancelled call must not cancel the boot
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(len(payload).to_bytes(HEADER, "big") + payload)
        await proc.stdin.drain()
        size = int.from_bytes(await proc.stdout.readexactly(HEADER), "big")
        return await proc.stdout.readexactly(size)

    def _booted(self) -> asyncio.subprocess.Process | None:
        boot = self._boot
        return boot.result() if boot.done() and not boot.cancelled() and boot.exception() is None else None

    @property
    def exited(self) -> bool:
        proc = self._booted()
        return self._boot.done() and (proc is None or proc.returncode is not None)

    def kill(self) -> bool:
        """Kill the process if it still runs; True if it did."""
        if not self._boot.done():
            self._boot.add_done_callback(_when_booted(_kill))
            return False
        proc = self._booted()
        return proc is not None and proc.returncode is None and _kill(proc)

    def close(self) -> None:
        if not self._boot.done():
            self._boot.add_done_callback(_when_booted(_close))
        elif (proc := self._booted()) is not None:
            _close(proc)

    async def exit_code(self) -> int | None:
        proc = await self._boot
        try:
            async with asyncio.timeout(1):
                return await proc.wait()
        except TimeoutError:
            return proc.returncode

    async def wait(self) -> None:
        try:
            proc = await self._boot
        except Exception:
            return  # it never started
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            _kill(proc)
            await proc.wait()


def _when_booted(action: Callable[[asyncio.subprocess.Process], object]) -> Callable[[Any], None]:
    def callback(boot: asyncio.Future[asyncio.subprocess.Process]) -> None:
        if not boot.cancelled() and boot.exception() is None:
            action(boot.result())

    return callback


def _kill(proc: asyncio.subprocess.Process) -> bool:
    try:
        proc.kill()
    except ProcessLookupError:
        return False
    return True


def _close(proc: asyncio.subprocess.Process) -> None:
    if proc.stdin is not None:
        proc.stdin.close()


def _encode(
    target: str | Callable[..., Any], args: Mapping[str, Any], memory: int, result_bytes: int
) -> bytes:
    try:
        return pickle.dumps((target, dict(args), memory, result_bytes))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise ToolError(f"a process tool's function and arguments must be picklable: {exc}") from None
