"""Periodic health checks of deployments; unhealthy ones get no traffic.

Each checked deployment is probed with what its server really serves. An
explicit ``options.health_url`` is used as it is. Otherwise the first round
finds out: ``/health`` at the server's root (llama.cpp, vLLM, SGLang, thrifty),
else ``GET {api_base}/models`` (every OpenAI-compatible server, Ollama, LM
Studio); a server that has neither (both 404 or 405) is not checked at all,
rather than being marked unhealthy for a route it never had.

A deployment is healthy while its probe gets an answer below 500 (a 401 or 429
still means the server is up; a 404 on a route found earlier does not). Each
change of state is logged with the reason: the status, or why nothing answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config import Deployment
from .member import Member

log = logging.getLogger("thrifty.balance")

# GET url within timeout seconds -> (HTTP status or None if nothing answered, why not)
Probe = Callable[[str, float], Awaitable[tuple[int | None, str]]]

_MISSING = (404, 405)  # the server has no such route


def health_urls(deployment: Deployment, only_self_hosted: bool = True) -> tuple[str, ...]:
    """The URLs to try, in order, for a deployment's health; empty if it is not checked.

    ``options.health_url`` alone if set; otherwise ``/health`` at the server's
    root and ``{api_base}/models``, for deployments on loopback or private
    addresses unless ``only_self_hosted`` is off.
    """
    explicit = deployment.options.get("health_url")
    if isinstance(explicit, str) and explicit:
        return (explicit,)
    if not deployment.api_base:
        return ()
    parts = urlsplit(deployment.api_base)
    if only_self_hosted and not _is_self_hosted(parts.hostname or ""):
        return ()
    base = deployment.api_base.rstrip("/")
    root = base[:-3] if base.endswith("/v1") else base
    return root + "/health", base + "/models"


def health_url(deployment: Deployment, only_self_hosted: bool = True) -> str | None:
    """The first URL :func:`health_urls` would try, or None if the deployment is not checked."""
    urls = health_urls(deployment, only_self_hosted)
    return urls[0] if urls else None


def _is_self_hosted(host: str) -> bool:
    if host in ("localhost", "host.docker.internal") or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


async def http_probe(url: str, timeout: float) -> tuple[int | None, str]:
    """``GET url``: its status, or None and why nothing answered within ``timeout`` seconds."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url) as resp,
        ):
            return resp.status, f"answered {resp.status}"
    except TimeoutError:
        return None, f"no answer within {timeout:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        return None, f"cannot connect ({type(exc).__name__})"


@dataclass
class Target:
    """One checked member: the URLs still to try, the one its server serves once found."""

    member: Member
    candidates: tuple[str, ...]
    url: str | None = None  # None until the first round finds which route the server has
    reason: str = ""  # why the member is unhealthy, for logs and status


def _healthy(status: int | None) -> bool:
    return status is not None and status < 500 and status not in _MISSING


class HealthMonitor:
    """Checks members every ``interval`` seconds in a background task."""

    def __init__(
        self,
        members: Sequence[Member],
        *,
        interval: float,
        timeout: float,
        only_self_hosted: bool = True,
        probe: Probe | None = None,
    ) -> None:
        self.targets = [
            Target(m, urls) for m in members if (urls := health_urls(m.deployment, only_self_hosted))
        ]
        for target in self.targets:
            if len(target.candidates) == 1:
                target.url = target.candidates[0]  # set by hand: no discovery
        self.interval = interval
        self.timeout = timeout
        self.probe = probe or http_probe
        self.checks = 0
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> None:
        results = await asyncio.gather(*(self._check(target) for target in self.targets))
        self.targets = [target for target, keep in zip(self.targets, results, strict=True) if keep]
        self.checks += 1

    async def _check(self, target: Target) -> bool:
        """Probe one member and update its health; False when its server has nothing to probe."""
        if target.member.parked:  # a stopped or warming replica: its scaler watches it
            return True
        if target.url is not None:
            status, why = await self.probe(target.url, self.timeout)
            self._update(target, _healthy(status), f"GET {target.url}: {why}")
            return True
        for url in target.candidates:
            status, why = await self.probe(url, self.timeout)
            if status is None:
                self._update(target, False, f"GET {url}: {why}")
                return True  # unreachable: find the route again next round
            if status not in _MISSING:
                target.url = url
                log.info("deployment %s: health checked with GET %s", target.member.name, url)
                self._update(target, _healthy(status), f"GET {url}: {why}")
                return True
        log.info(
            "deployment %s: not health-checked (its server answers 404 on %s)",
            target.member.name,
            " and ".join(target.candidates),
        )
        self._update(target, True, "")
        return False

    @staticmethod
    def _update(target: Target, ok: bool, reason: str) -> None:
        member = target.member
        if ok and not member.healthy:
            member.breaker.on_recovered()
            log.warning("deployment %s is healthy again", member.name)
        elif not ok and (member.healthy or reason != target.reason):
            log.warning("deployment %s marked unhealthy: %s", member.name, reason)
        member.set_healthy(ok, reason)
        target.reason = "" if ok else reason

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
        return {
            "checked": [t.member.name for t in self.targets],
            "rounds": self.checks,
            "unhealthy": {t.member.name: t.reason for t in self.targets if t.reason},
        }
