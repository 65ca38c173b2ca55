"""Run a batch on a Ray cluster: chunks of requests become Ray tasks.

Requests are grouped by model and cut into chunks; each chunk is one Ray task
that runs its requests concurrently on a worker (through a copy of the
backend, sent pickled) and returns their result lines. A model's chunks ask
for the Ray resources configured for it, so a node that holds a local model
(``--resources '{"local_model": 1}'``) gets that model's work and a thin node
that only calls cloud APIs gets the rest. A chunk whose node is lost is
retried by Ray on another node that has the resources (``max_retries``).

Ray is imported only here, when a batch runs with a Ray address.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from .batch_job import BackendFactory, Done, JobSettings, Pending, run_local

if TYPE_CHECKING:
    from ..backend import Backend


def resources_for(model: str, resources: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The Ray resources one chunk of ``model``'s requests asks for ("*" is the default)."""
    return dict(resources.get(model) or resources.get("*") or {})


def chunks(pending: list[Pending], size: int) -> list[tuple[str, list[Pending]]]:
    """Pending requests grouped by model, cut into chunks of at most ``size``."""
    by_model: dict[str, list[Pending]] = {}
    for item in pending:
        by_model.setdefault(str(item[2].get("model")), []).append(item)
    out: list[tuple[str, list[Pending]]] = []
    for model, items in by_model.items():
        out += [(model, items[i : i + size]) for i in range(0, len(items), size)]
    return out


def run_chunk(
    target: Backend | BackendFactory, items: list[Pending], settings: JobSettings
) -> tuple[str, list[Done]]:
    """The body of one Ray task: run a chunk here, return (node id, results)."""
    import ray

    from ..backend import Backend

    backend = target if isinstance(target, Backend) else target()

    async def go() -> list[Done]:
        await backend.start()
        try:
            return [done async for done in run_local(items, backend, settings)]
        finally:
            await backend.aclose()

    return ray.get_runtime_context().get_node_id(), asyncio.run(go())


class RayEngine:
    """An engine (see ``batch_job``) that runs chunks on a Ray cluster."""

    def __init__(
        self,
        address: str,
        backend: Backend | BackendFactory,
        settings: JobSettings,
        *,
        resources: Mapping[str, Mapping[str, float]] | None = None,
        chunk_size: int = 16,
        num_cpus: float = 1.0,
        max_retries: int = 3,
    ) -> None:
        self.address = address
        self.backend = backend
        self.settings = settings
        self.resources = dict(resources or {})
        self.chunk_size = chunk_size
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.nodes: Counter[str] = Counter()  # chunks finished per node id
        self.placements: list[tuple[str, str]] = []  # (model, node id) per finished chunk

    def __call__(self, pending: list[Pending]) -> AsyncIterator[Done]:
        return self._run(pending)

    async def _run(self, pending: list[Pending]) -> AsyncIterator[Done]:
        import ray

        owned = not ray.is_initialized()
        if owned:
            ray.init(
                address=self.address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        remote = ray.remote(run_chunk)
        refs: dict[asyncio.Future[Any], Any] = {}
        try:
            for model, items in chunks(pending, self.chunk_size):
                ref = remote.options(
                    num_cpus=self.num_cpus,
                    resources=resources_for(model, self.resources),
                    max_retries=self.max_retries,
                    name=f"thrifty-batch:{model}",
                ).remote(self.backend, items, self.settings)
                refs[asyncio.wrap_future(ref.future())] = (ref, model)
            while refs:
                finished, _ = await asyncio.wait(refs, return_when=asyncio.FIRST_COMPLETED)
                for future in finished:
                    _ref, model = refs.pop(future)
                    node, results = future.result()
                    self.nodes[node] += 1
                    self.placements.append((model, node))
                    for done in results:
                        yield done
        finally:
            for ref, _model in refs.values():
                ray.cancel(ref, force=True)
            if owned:
                ray.shutdown()


def ray_engine(
    address: str,
    backend: Backend | BackendFactory,
    settings: JobSettings,
    *,
    resources: Mapping[str, Mapping[str, float]] | None = None,
    chunk_size: int = 16,
) -> RayEngine:
    return RayEngine(address, backend, settings, resources=resources, chunk_size=chunk_size)
