"""A real gateway on loopback whose primary deployment is dead and whose fallback is a fake upstream."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thrifty.config import parse_config
from thrifty.fakeupstream import FakeUpstream
from thrifty.gateway import Gateway
from thrifty.server.app import create_app

from .helpers import free_port


@dataclass
class Live:
    url: str
    gateway: Gateway
    dead_port: int


@contextmanager
def dead_primary(tmp_path: Path, **alerts: Any) -> Iterator[Live]:
    """Group ``primary`` (deployment ``dead``: a closed loopback port) falls back to ``backup``."""
    import uvicorn

    dead_port = free_port()  # bound and released: nothing listens there
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with FakeUpstream(name="alive", text="from the backup") as alive:
            config = parse_config(
                {
                    "server": {"data_dir": str(tmp_path)},
                    "alerts": alerts,
                    "models": [
                        {
                            "name": "primary",
                            "health_check": False,  # the breaker alone finds it dead: no timing race
                            "breaker": {"cooldown": 3600},  # and no probe while the test runs
                            "deployments": [
                                {
                                    "model": "openai_compatible/m",
                                    "api_base": f"http://127.0.0.1:{dead_port}/v1",
                                    "name": "dead",
                                }
                            ],
                            "fallbacks": ["backup"],
                        },
                        {
                            "name": "backup",
                            "deployments": [
                                {"model": "openai_compatible/m", "api_base": alive.url, "name": "alive"}
                            ],
                        },
                    ],
                },
                source="t.yaml",
            )
            gateway = Gateway(config)
            server = uvicorn.Server(
                uvicorn.Config(create_app(gateway), host="127.0.0.1", port=port, log_level="warning")
            )
            box["gateway"], box["server"] = gateway, server
            serving = asyncio.ensure_future(server.serve())
            while not server.started:
                await asyncio.sleep(0.01)
            await gateway.start()
            started.set()
            await serving

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not started.wait(0.05):
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
    try:
        yield Live(f"http://127.0.0.1:{port}", box["gateway"], dead_port)
    finally:
        box["server"].should_exit = True
        thread.join(30)
        loop.close()
