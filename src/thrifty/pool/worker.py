"""``thrifty worker``: the reference worker's loop with real models behind it.

It loads each model (``providers/local.py``: llama.cpp), measures what the
machine can do (context size, tokens per second, memory, concurrency, power
state when the OS tells) and serves the tasks it leases on one asyncio loop in
a thread: a plain request is answered in one message, a stream is sent in
batches of chunks as they come.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ..backend import Backend
from ..errors import ThriftyError
from ..types import parsed
from .reference_worker import Send

BATCH_S = 0.02  # stream chunks are sent at least this often
BATCH_CHUNKS = 32


def power_state(root: Path = Path("/sys/class/power_supply")) -> tuple[str, float | None]:
    """``(ac | battery | unknown, battery percent)`` from Linux's power-supply class."""
    try:
        supplies = list(root.iterdir())
    except OSError:
        return "unknown", None

    def read(path: Path) -> str:
        try:
            return path.read_text().strip()
        except OSError:
            return ""

    mains = [read(s / "online") == "1" for s in supplies if read(s / "type") == "Mains"]
    batteries = [s for s in supplies if read(s / "type") == "Battery"]
    if not batteries:
        return ("ac" if any(mains) else "unknown"), None
    level = read(batteries[0] / "capacity")
    percent = float(level) if level.isdigit() else None
    discharging = read(batteries[0] / "status") == "Discharging"
    return ("battery" if discharging and not any(mains) else "ac"), percent


def memory_mb() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20))
    except (ValueError, OSError, AttributeError):
        return None


class Runner:
    """The worker's models on one event loop in a thread; ``work`` is called from lease threads."""

    def __init__(self, backends: dict[str, Backend]) -> None:
        self.backends = backends
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pool-models", daemon=True)
        self.thread.start()

    def call(self, work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def start(self) -> None:
        for backend in self.backends.values():
            self.call(backend.start())

    def close(self) -> None:
        for backend in self.backends.values():
            self.call(backend.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)

    def measure(self, model: str) -> float:
        """Tokens per second of ``model`` on a short generation (the first call also warms it)."""
        from ..testing import chat

        backend = self.backends[model]
        self.call(backend.complete(chat("Count from one to ten.", model=model, max_tokens=4)))
        began = time.perf_counter()
        response = self.call(backend.complete(chat("Count from one to ten.", model=model, max_tokens=32)))
        tokens = max(1, int(response.usage.completion_tokens))
        return max(0.001, tokens / (time.perf_counter() - began))

    def work(self, task: dict[str, Any], send: Send) -> None:
        self.call(self._serve(task, send))

    async def _serve(self, task: dict[str, Any], send: Send) -> None:
        from ..validate import chat_request

        try:
            request = chat_request(task["request"])
            backend = self.backends.get(request.model)
            if backend is None:
                raise ThriftyError(f"This worker does not serve {request.model!r}.", status=404)
            if not task.get("stream"):
                response = await backend.complete(request)
                await asyncio.to_thread(send, response=response.body, done=True)
                return
            batch: list[dict[str, Any]] = []
            last = time.monotonic()
            async for chunk in backend.stream(request):
                batch.append(parsed(chunk))
                if len(batch) >= BATCH_CHUNKS or time.monotonic() - last >= BATCH_S:
                    await asyncio.to_thread(send, chunks=batch)
                    batch, last = [], time.monotonic()
            await asyncio.to_thread(send, chunks=batch, done=True)
        except ThriftyError as exc:
            error = {"message": exc.message, "type": exc.type, "code": exc.code, "status": exc.status}
            await asyncio.to_thread(send, error=error, done=True)


def build_backends(
    models: list[str], *, n_ctx: int, concurrency: int, fake: str | None, fake_delay: float
) -> dict[str, Backend]:
    """One backend per model: llama.cpp (``provider: local``), or a scripted fake for tests."""
    from ..config import Deployment

    backends: dict[str, Backend] = {}
    for model in models:
        if fake is not None:
            from ..testing import FakeBackend

            backends[model] = FakeBackend(fake, name=f"worker/{model}", delay=fake_delay)
            continue
        from ..providers.local import LocalBackend

        deployment = Deployment(
            name=f"worker/{model}",
            provider="local",
            model=model,
            options={"n_ctx": n_ctx, "n_instances": concurrency},
        )
        backends[model] = LocalBackend(deployment)
    return backends


def capabilities(
    runner: Runner, *, n_ctx: int, concurrency: int, speed: float | None = None
) -> dict[str, Any]:
    """What this machine tells the pool when it joins."""
    power, battery = power_state()
    models = [
        {"name": name, "n_ctx": n_ctx, "tokens_per_s": round(speed or runner.measure(name), 3)}
        for name in runner.backends
    ]
    return {
        "models": models,
        "concurrency": concurrency,
        "memory_mb": memory_mb(),
        "power": power,
        "battery": battery,
    }
