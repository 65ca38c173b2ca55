"""Running a benchmark: plan the tasks, send them through the task manager, grade, store, resume.

A run's state is a batch store (:class:`thrifty.tasks.batch_store.BatchStore`,
SQLite in WAL mode) in the output folder. The plan (every task and every
model × task request) is written once; each finished request is graded and
committed before the next is counted, so a run killed at any moment, even by
SIGKILL, resumes by sending only the requests that never finished. A store
made for another plan (other models, seed, domains...) is refused.

Requests run through the batch jobs' engines: :func:`thrifty.tasks.batch_job.run_local`
(a :class:`~thrifty.tasks.TaskManager` with the given concurrency) or, with a
Ray address, :class:`thrifty.tasks.ray_engine.RayEngine`. Each request is
timed inside the engine by :class:`Timed`, which also notes the deployment and
the model group that answered (a router's tier).

The concurrency sweep runs the same few tasks on one model at 1, 2, 4, 8 and
16 workers, one level after another, timing each level's wall clock. A level
is timed as a whole, so a level interrupted by a kill is run again from its
start under a new attempt id (its requests are the only ones ever sent twice).
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from ..backend import Backend, Wrapper
from ..errors import InvalidRequest
from ..tasks.batch_format import BatchLine, ParsedBatch
from ..tasks.batch_store import FAILED, OK, BatchStore
from ..tasks.progress import ProgressBar
from . import general, image, maze, quantum, sorting
from .task import DOMAINS, TYPES, BenchTask, Grade, echoes, fail

if TYPE_CHECKING:
    from ..agent.sandbox import Sandbox
    from ..prices import PriceTable
    from ..tasks.batch_job import Done, Engine, JobSettings
    from ..types import ChatRequest, ChatResponse

MATRIX = "matrix"
SWEEP_LEVELS = (1, 2, 4, 8, 16)
SYSTEM = "You are a careful assistant. Answer briefly."
_MODULES = {"general": general, "quantum": quantum, "maze": maze, "sorting": sorting, "image": image}


@dataclass(frozen=True)
class RunSpec:
    """What to run; everything that shapes the plan is part of its fingerprint."""

    models: tuple[str, ...]
    domains: tuple[str, ...] = DOMAINS
    types: tuple[str, ...] = TYPES
    n: int = 20
    seed: int = 7
    max_tokens: int = 128
    concurrency: int = 4
    per_model: int | None = None  # at most this many requests of one model in flight
    retries: int = 1
    timeout: float | None = None  # the task manager's deadline, from submission (queueing counts)
    sweep_levels: tuple[int, ...] = SWEEP_LEVELS
    sweep_model: str | None = None  # default: the first model
    sweep_n: int = 16
    data: str | None = None  # folder of the shared routing data (general/analysis)
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # group -> USD per 1M in, out
    value: float = 0.01  # USD one correct answer is worth (the reports' ROI)

    def fingerprint(self) -> str:
        keys = ("models", "domains", "types", "n", "seed", "max_tokens")
        plan = {k: v for k, v in asdict(self).items() if k in keys}
        return hashlib.sha256(orjson.dumps(plan, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    @property
    def swept(self) -> str:
        return self.sweep_model or self.models[0]


def generate(domain: str, kind: str, n: int, seed: int, data: Path | None = None) -> list[BenchTask]:
    """``n`` tasks of one cell; the same seed gives the same tasks, whatever else is run."""
    if domain not in _MODULES:
        raise InvalidRequest(f"unknown domain {domain!r}; expected some of {', '.join(DOMAINS)}")
    if kind not in TYPES:
        raise InvalidRequest(f"unknown task type {kind!r}; expected some of {', '.join(TYPES)}")
    rng = random.Random(f"{seed}/{domain}/{kind}")
    if domain == "general":
        return [general.generate(kind, rng, i, data) for i in range(n)]
    module = _MODULES[domain]
    return [module.generate(kind, rng, i) for i in range(n)]


def plan(spec: RunSpec) -> list[BenchTask]:
    data = Path(spec.data) if spec.data else None
    return [t for d in spec.domains for k in spec.types for t in generate(d, k, spec.n, spec.seed, data)]


def grade(task: BenchTask, text: str) -> Grade:
    """The domain's verdict on ``text``; a grader that breaks counts as a failure, never a crash."""
    if not (task.domain == "sorting" and task.type == "generation") and echoes(task.prompt, text):
        return fail("the answer repeats the question")
    try:
        return _MODULES[task.domain].grade(task, text)  # type: ignore[attr-defined, no-any-return]
    except Exception as exc:
        return fail(f"the answer could not be graded: {type(exc).__name__}: {exc}")


async def grade_answer(task: BenchTask, text: str, sandbox: Sandbox) -> Grade:
    """:func:`grade`, and for code answers the code run in the sandbox."""
    if task.domain == "sorting" and task.type == "generation":
        return await sorting.grade_code(task, text, sandbox)
    return grade(task, text)


def request_body(model: str, task: BenchTask, max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task.prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


# -- timing inside the engine ----------------------------------------------------------


class Timed(Wrapper):
    """Notes each answer's latency, deployment and answering group in ``body["thrifty_bench"]``."""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        start = time.perf_counter()
        response = await self.inner.complete(request)
        route = request.trace.route
        response.body["thrifty_bench"] = {
            "latency_s": time.perf_counter() - start,
            "deployment": request.trace.deployment,
            "group": route.model if route is not None else request.model,
        }
        return response


def timed_factory(factory: Callable[[], Backend]) -> Backend:
    """A picklable way to build ``Timed(factory())`` where it runs (a Ray worker)."""
    return Timed(factory())


# -- the store -------------------------------------------------------------------------


def create(
    store: BatchStore, batch_id: str, data: dict[str, Any], lines: list[tuple[str, dict[str, Any]]]
) -> None:
    parsed = ParsedBatch([BatchLine(i + 1, cid, body) for i, (cid, body) in enumerate(lines)], [])
    store.create_batch(batch_id, data, parsed)


def prepare(store: BatchStore, spec: RunSpec) -> list[BenchTask]:
    """The run's tasks: stored on the first run, read back (and checked) on a resume."""
    existing = store.batch(MATRIX)
    if existing is not None:
        if existing.get("fingerprint") != spec.fingerprint():
            raise InvalidRequest(
                f"the state in {store.path} belongs to another run ({existing.get('summary')}); "
                "use another output folder or remove it"
            )
        return [BenchTask.from_json(t) for t in existing["tasks"]]
    tasks = plan(spec)
    lines = [(f"{m}|{t.id}", request_body(m, t, spec.max_tokens)) for m in spec.models for t in tasks]
    summary = f"models {','.join(spec.models)}, seed {spec.seed}, n {spec.n}"
    data = {
        "id": MATRIX,
        "status": "in_progress",
        "fingerprint": spec.fingerprint(),
        "summary": summary,
        "spec": _spec_json(spec),
        "tasks": [t.to_json() for t in tasks],
    }
    create(store, MATRIX, data, lines)
    return tasks


def _spec_json(spec: RunSpec) -> dict[str, Any]:
    out = asdict(spec)
    out["prices"] = {k: list(v) for k, v in spec.prices.items()}
    return out


@dataclass
class Scorer:
    """Turns an engine's :class:`Done` into a graded, priced result record."""

    tasks: Mapping[str, BenchTask]
    sandbox: Sandbox
    price_table: PriceTable | None = None
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    async def score(self, custom_id: str, done: Done) -> dict[str, Any]:
        model, _, tid = custom_id.partition("|")
        task = self.tasks[tid]
        row: dict[str, Any] = {"custom_id": custom_id, "model": model, "task": tid, "domain": task.domain}
        row["type"] = task.type
        response = (done.record.get("response") or {}).get("body") or {}
        if done.state != OK:
            error = done.record.get("error") or {}
            row.update(ok=False, reason=f"request failed: {error.get('message')}", error=error.get("code"))
            row.update(tokens_in=0, tokens_out=0, latency_s=None, cost=0.0, text="")
            return row
        text = _text(response)
        usage = response.get("usage") or {}
        meta = response.get("thrifty_bench") or {}
        verdict = await grade_answer(task, text, self.sandbox)
        tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        row.update(ok=verdict.ok, reason=verdict.reason, error=None, text=text[:2000])
        row.update(tokens_in=tokens_in, tokens_out=tokens_out, latency_s=meta.get("latency_s"))
        row.update(deployment=meta.get("deployment"), group=meta.get("group"))
        row["cost"] = self.cost(meta, tokens_in, tokens_out, done.cost)
        return row

    def cost(self, meta: Mapping[str, Any], tokens_in: int, tokens_out: int, fallback: float) -> float:
        """USD: a --price for the answering group, else the deployment's price, else by model name."""
        group = str(meta.get("group") or "")
        if group in self.prices:
            per_in, per_out = self.prices[group]
            return (tokens_in * per_in + tokens_out * per_out) / 1e6
        deployment = str(meta.get("deployment") or "")
        if self.price_table is not None and deployment:
            return self.price_table.rates(deployment, group).full_cost(tokens_in, tokens_out)
        return fallback


def _text(body: Mapping[str, Any]) -> str:
    choices = body.get("choices") or [{}]
    content = (choices[0].get("message") or {}).get("content") if isinstance(choices[0], dict) else None
    return content if isinstance(content, str) else ""


async def drain(
    store: BatchStore, batch_id: str, engine: Engine, scorer: Scorer, bar: ProgressBar | None
) -> None:
    """Run what is pending in ``batch_id``; grade and commit each result as it arrives."""
    pending = store.pending(batch_id)
    ids = {idx: cid for idx, cid, _ in pending}
    async for done in engine(pending):
        row = await scorer.score(ids[done.idx], done)
        store.record(batch_id, done.idx, OK if done.state == OK else FAILED, row, row["cost"])
        if bar is not None:
            bar.update(ok=bool(row["ok"]), cost=row["cost"])


async def regrade(store: BatchStore, batch_id: str, tasks: Mapping[str, BenchTask]) -> int:
    """Grade the stored answers again (after a grader changed); returns how many verdicts changed."""
    from ..agent.sandbox import Sandbox

    changed = 0
    sandbox = Sandbox(workers=1)
    try:
        rows = store.db.execute(
            "SELECT idx, state, result, cost FROM requests WHERE batch_id = ? AND state IN (?, ?)",
            (batch_id, OK, FAILED),
        ).fetchall()
        for idx, state, raw, cost in rows:
            row = orjson.loads(raw)
            if row.get("error"):
                continue
            verdict = await grade_answer(tasks[row["task"]], row.get("text") or "", sandbox)
            if verdict.ok != row["ok"] or verdict.reason != row["reason"]:
                changed += 1
                row.update(ok=verdict.ok, reason=verdict.reason)
                store.record(batch_id, idx, state, row, cost)
    finally:
        await sandbox.aclose()
    return changed


def results(store: BatchStore, batch_id: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in store.results(batch_id, OK, FAILED)]


# -- one whole run ---------------------------------------------------------------------


EngineFor = Callable[["JobSettings"], "Engine"]


async def run(
    spec: RunSpec,
    out: Path,
    engine_for: EngineFor,
    *,
    price_table: PriceTable | None = None,
    progress: TextIO | None = None,
    sweep: bool = True,
) -> BatchStore:
    """Run (or resume) the matrix and the concurrency sweep; the store holds every result.

    The caller closes the returned store.
    """
    from ..agent.sandbox import Sandbox
    from ..tasks.batch_job import JobSettings

    out.mkdir(parents=True, exist_ok=True)
    store = BatchStore(str(out / "state.db"))
    sandbox = Sandbox(workers=1)
    try:
        tasks = prepare(store, spec)
        scorer = Scorer({t.id: t for t in tasks}, sandbox, price_table, spec.prices)
        limits = {m: spec.per_model for m in spec.models} if spec.per_model else {}
        settings = JobSettings(spec.concurrency, limits, retries=spec.retries, timeout=spec.timeout)
        await _level(store, MATRIX, engine_for(settings), scorer, progress, "matrix")
        if sweep:
            for workers in spec.sweep_levels:
                await _sweep_level(store, spec, tasks, workers, engine_for, scorer, progress)
    except BaseException:
        await sandbox.aclose()
        store.close()
        raise
    await sandbox.aclose()
    return store


async def _level(
    store: BatchStore, batch_id: str, engine: Engine, scorer: Scorer, progress: TextIO | None, what: str
) -> None:
    counts = store.counts(batch_id)
    bar = None
    if progress is not None:
        progress.write(f"thrifty bench: {what}\n")
        done = counts["total"] - counts["pending"]
        bar = ProgressBar(
            counts["total"], done=done, failed=counts["failed"], cost=counts["cost"], stream=progress
        )
    start = time.perf_counter()
    await drain(store, batch_id, engine, scorer, bar)
    if bar is not None:
        bar.close()
    data = store.batch(batch_id) or {"id": batch_id}
    if data.get("status") != "completed":
        store.save_batch({**data, "status": "completed", "wall_s": time.perf_counter() - start})


def sweep_tasks(tasks: Sequence[BenchTask], count: int) -> list[BenchTask]:
    """An even spread over the plan's cells: one task of each cell in turn."""
    cells: dict[tuple[str, str], list[BenchTask]] = {}
    for t in tasks:
        cells.setdefault((t.domain, t.type), []).append(t)
    picked: list[BenchTask] = []
    depth = 0
    while len(picked) < count and any(len(c) > depth for c in cells.values()):
        picked += [c[depth] for c in cells.values() if len(c) > depth][: count - len(picked)]
        depth += 1
    return picked


def sweep_ids(store: BatchStore, workers: int) -> list[dict[str, Any]]:
    """Every attempt at one sweep level, oldest first."""
    prefix = f"sweep-{workers}-"
    found = [b for b in store.batches(limit=10_000) if str(b.get("id", "")).startswith(prefix)]
    return sorted(found, key=lambda b: int(str(b["id"]).rsplit("-", 1)[1]))


async def _sweep_level(
    store: BatchStore,
    spec: RunSpec,
    tasks: Sequence[BenchTask],
    workers: int,
    engine_for: EngineFor,
    scorer: Scorer,
    progress: TextIO | None,
) -> None:
    from ..tasks.batch_job import JobSettings

    attempts = sweep_ids(store, workers)
    if attempts and attempts[-1].get("status") == "completed":
        return
    batch_id = f"sweep-{workers}-{len(attempts)}"
    picked = sweep_tasks(tasks, spec.sweep_n)
    lines = [(f"{spec.swept}|{t.id}", request_body(spec.swept, t, spec.max_tokens)) for t in picked]
    create(store, batch_id, {"id": batch_id, "status": "in_progress", "workers": workers}, lines)
    settings = JobSettings(concurrency=workers, retries=spec.retries, timeout=spec.timeout)
    await _level(store, batch_id, engine_for(settings), scorer, progress, f"concurrency {workers}")


def sweep_results(store: BatchStore, levels: Sequence[int]) -> list[tuple[int, float, list[dict[str, Any]]]]:
    """(workers, wall seconds, result rows) for every completed sweep level."""
    out = []
    for workers in levels:
        attempts = sweep_ids(store, workers)
        if attempts and attempts[-1].get("status") == "completed":
            last = attempts[-1]
            out.append((workers, float(last.get("wall_s") or 0.0), results(store, str(last["id"]))))
    return out


def local_engine_for(backend: Backend) -> EngineFor:
    from ..tasks.batch_job import local_engine

    timed = Timed(backend)
    return functools.partial(local_engine, timed)


def ray_engine_for(address: str, factory: Callable[[], Backend]) -> EngineFor:
    from ..tasks.ray_engine import ray_engine

    target = functools.partial(timed_factory, factory)

    def engine_for(settings: JobSettings) -> Engine:
        return ray_engine(address, target, settings)

    return engine_for


async def run_with_backend(spec: RunSpec, out: Path, backend: Backend, **kw: Any) -> BatchStore:
    """Start ``backend``, run, close it."""
    await backend.start()
    try:
        return await run(spec, out, local_engine_for(backend), **kw)
    finally:
        await backend.aclose()


def reference(task: BenchTask) -> str:
    """A known-good answer to ``task`` from its domain (what a perfect model would say)."""
    return _MODULES[task.domain].reference(task)  # type: ignore[attr-defined, no-any-return]
