"""Running a batch: pending requests in, durable results out.

A batch's requests run through an *engine*: a function from the pending
requests to an async iterator of :class:`Done` results, in completion order.
:func:`local_engine` runs them on this machine with a :class:`TaskManager`;
``thrifty.tasks.ray_engine`` runs them on a Ray cluster. Whatever the engine,
:func:`drain` commits each result to the store before writing its line, so a
killed job loses nothing and redoes nothing that finished.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from ..errors import InvalidRequest
from .batch_format import dumps, failure_record, parse_batch, success_record, to_chat_request
from .batch_store import FAILED, INVALID, OK, BatchStore
from .limits import Limit
from .manager import Task, TaskManager
from .progress import ProgressBar, response_cost

if TYPE_CHECKING:
    from ..backend import Backend
    from ..types import ChatRequest

Pending = tuple[int, str, dict[str, Any]]  # index, custom_id, body


@dataclass(frozen=True)
class Done:
    idx: int
    state: str  # OK or FAILED
    record: dict[str, Any]
    cost: float = 0.0


Engine = Callable[[list[Pending]], AsyncIterator[Done]]
BackendFactory = Callable[[], "Backend"]  # builds a backend where it runs (e.g. on a Ray worker)


@dataclass(frozen=True)
class JobSettings:
    """How a batch's requests run: limits, retries, per-request timeout."""

    concurrency: int | Limit = 64
    model_limits: Mapping[str, int] = field(default_factory=dict)
    retries: int = 2
    timeout: float | None = None


def outcome(idx: int, custom_id: str, request: ChatRequest, task: Task[Any]) -> Done:
    """The result line for one finished task."""
    error = task.exception()
    rid = request.trace.request_id
    if error is not None:
        return Done(idx, FAILED, failure_record(custom_id, rid, error))
    response = task.result()
    body = dict(response.body)
    body.setdefault("usage", response.usage.to_json())
    return Done(idx, OK, success_record(custom_id, rid, body), response_cost(response))


async def run_local(pending: list[Pending], backend: Backend, settings: JobSettings) -> AsyncIterator[Done]:
    """Run requests through ``backend`` here, yielding results as they finish.

    Only a window of requests (four times the concurrency limit, at least 256)
    is turned into tasks at a time, so a batch of any size costs the memory
    of its window, not of its length.
    """
    async with TaskManager(concurrency=settings.concurrency, model_limits=settings.model_limits) as tm:
        todo = iter(pending)
        finished: asyncio.Queue[Task[Any]] = asyncio.Queue()
        meta: dict[Task[Any], tuple[int, str, ChatRequest]] = {}

        def fill() -> None:
            while len(meta) < max(256, 4 * tm.limit.limit):
                item = next(todo, None)
                if item is None:
                    return
                idx, custom_id, body = item
                request = to_chat_request(body)
                task = tm.submit_chat(
                    backend, request, retries=settings.retries, timeout=settings.timeout, name=custom_id
                )
                meta[task] = (idx, custom_id, request)
                task.future.add_done_callback(functools.partial(_notify, finished, task))

        fill()
        while meta:
            task = await finished.get()
            idx, custom_id, request = meta.pop(task)
            if not task.cancelled():
                yield outcome(idx, custom_id, request, task)
            fill()


def _notify(queue: asyncio.Queue[Task[Any]], task: Task[Any], _future: object) -> None:
    queue.put_nowait(task)


def local_engine(backend: Backend, settings: JobSettings) -> Engine:
    def engine(pending: list[Pending]) -> AsyncIterator[Done]:
        return run_local(pending, backend, settings)

    return engine


async def drain(
    store: BatchStore,
    batch_id: str,
    engine: Engine,
    write: Callable[[Done], None] | None = None,
    bar: ProgressBar | None = None,
) -> None:
    """Run what is pending; commit each result, then hand it to ``write``."""
    async for done in engine(store.pending(batch_id)):
        store.record(batch_id, done.idx, done.state, done.record, done.cost)
        if write is not None:
            write(done)
        if bar is not None:
            bar.update(ok=done.state == OK, cost=done.cost)


# -- a batch file on this machine (the CLI) ------------------------------------------

JOB_ID = "job"


@dataclass(frozen=True)
class FileJob:
    input: str
    output: str
    errors: str
    state: str
    max_requests: int = 50_000
    limit_name: str = "tasks.batch.max_requests"


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare(store: BatchStore, job: FileJob) -> bool:
    """Load the input into the store once; True when resuming an earlier run."""
    sha = file_sha256(job.input)
    existing = store.batch(JOB_ID)
    if existing is not None:
        if existing.get("input_sha256") != sha:
            raise InvalidRequest(
                f"the state file {job.state} belongs to another input ({existing.get('input')}); "
                "remove it or pass another --state"
            )
        return True
    with open(job.input, "rb") as f:
        parsed = parse_batch(f, max_requests=job.max_requests, limit_name=job.limit_name)
    store.create_batch(
        JOB_ID, {"id": JOB_ID, "status": "in_progress", "input": job.input, "input_sha256": sha}, parsed
    )
    return False


def rewrite(store: BatchStore, path: str, *states: str) -> None:
    """Write the stored results to ``path`` atomically (drops a torn last line)."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.writelines(store.results(JOB_ID, *states))
    os.replace(tmp, path)


async def run_file_job(job: FileJob, engine: Engine, *, progress: TextIO | None = None) -> dict[str, Any]:
    """Run (or resume) a batch file; return the final counts."""
    Path(job.state).parent.mkdir(parents=True, exist_ok=True)
    store = BatchStore(job.state)
    try:
        prepare(store, job)
        rewrite(store, job.output, OK)
        rewrite(store, job.errors, INVALID, FAILED)
        counts = store.counts(JOB_ID)
        bar = ProgressBar(
            counts["total"],
            done=counts["total"] - counts["pending"],
            failed=counts["failed"],
            cost=counts["cost"],
            stream=progress,
        )
        with open(job.output, "ab") as out, open(job.errors, "ab") as err:
            await drain(store, JOB_ID, engine, _writer(out, err), bar)
        bar.close()
        data = store.batch(JOB_ID) or {"id": JOB_ID}
        store.save_batch({**data, "status": "completed"})
        return store.counts(JOB_ID)
    finally:
        store.close()


def _writer(out: BinaryIO, err: BinaryIO) -> Callable[[Done], None]:
    def write(done: Done) -> None:
        f = out if done.state == OK else err
        f.write(dumps(done.record))
        f.flush()

    return write
