"""Periodic health checks of self-hosted deployments; unhealthy ones get no traffic."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..config import Deployment
from .member import Member

Probe = Callable[[str, float], Awaitable[bool]]


def health_url(deployment: Deployment, only_self_hosted: bool = True) -> str | None:
    """The URL to GET for a deployment's health, or None if it is not checked.

    ``options.health_url`` wins; otherwise ``api_base`` without ``/v1`` plus
    ``/health`` (what llama.cpp, vLLM, SGLang and thrifty serve), for
    deployments on loopback or private addresses unless told otherwise.
    """
    explicit = deployment.options.get("health_url")
    if isinstance(explicit, str) and explicit:
        return explicit
    if not deployment.api_base:
        return None
    parts = urlsplit(deployment.api_base)
    if only_self_hosted and not _is_self_hosted(parts.hostname or ""):
        return None
    root = deployment.api_base.rstrip("/")
    if root.endswith("/v1"):
        root = root[:-3]
    return root + "/health"


def _is_self_hosted(host: str) -> bool:
    if host in ("localhost", "host.docker.internal") or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


async def http_probe(url: str, timeout: float) -> bool:
    """True when ``GET url`` answers 2xx within ``timeout`` seconds."""
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                session.get(url) as resp:
            return 200 <= resp.status < 300
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


class HealthMonitor:
    """Checks members every ``interval`` seconds in a background task."""

    def __init__(self, members: Sequence[Member], *, interval: float, timeout: float,
                 only_self_hosted: bool = True, probe: Probe | None = None) -> None:
        self.targets = [(m, url) for m in members
                        if (url := health_url(m.deployment, only_self_hosted)) is not None]
        self.interval = interval
        self.timeout = timeout
        self.probe = probe or http_probe
        self.checks = 0
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> None:
        results = await asyncio.gather(*(self.probe(url, self.timeout) for _, url in self.targets))
        for (member, _), ok in zip(self.targets, results, strict=True):
            if ok and not member.healthy:
                member.breaker.on_recovered()
            member.healthy = ok
        self.checks += 1

    async def _loop(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self.targets and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def status(self) -> dict[str, Any]:
        return {"checked": [m.name for m, _ in self.targets], "rounds": self.checks}
