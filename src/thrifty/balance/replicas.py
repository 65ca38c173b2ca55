"""Local model replicas as supervised child processes.

:class:`ReplicaSupervisor` starts N copies of an OpenAI-compatible server
(by default ``thrifty serve`` with the embedded model), each on its own
loopback port; restarts any that exits, with exponential backoff that resets
once a replica has stayed up; and exposes them as ``openai``-provider
:class:`~thrifty.config.Deployment` entries for a balanced group, whose health
checks keep traffic off a replica while it is down or restarting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backend import Backend, ReportsStatus, Wrapper
from ..config import Config, Deployment, ModelGroup, Where
from .clock import Clock, MonotonicClock
from .health import http_probe

# ``thrifty serve`` in a child: the default embedded model, or the model in ``{config}``.
SERVE_COMMAND = (
    "{python}",
    "-m",
    "thrifty",
    "serve",
    "--port",
    "{port}",
    "--host",
    "{host}",
    "--log-level",
    "warning",
)


@dataclass(frozen=True)
class ReplicaSpec:
    """What to run: ``command`` may use ``{port}``, ``{host}``, ``{index}``, ``{python}``
    and ``{config}`` (a YAML file written from ``child_config`` at start)."""

    group: str = "local"
    model: str = "smollm2"
    replicas: int = 2
    command: Sequence[str] = SERVE_COMMAND
    host: str = "127.0.0.1"
    ports: Sequence[int] = ()  # empty: free ports picked at construction
    ready_timeout: float = 120.0
    restart_backoff: float = 0.5
    restart_backoff_max: float = 30.0
    stable_after: float = 30.0  # a replica up this long restarts with the smallest backoff again
    env: Mapping[str, str] = field(default_factory=dict)
    log_dir: str | None = None
    max_concurrency: int | None = None  # per replica, passed to its Deployment
    health_path: str = "/health"  # thrifty children: "/ready" (200 once the model is loaded)
    child_config: Mapping[str, Any] | None = None


@dataclass
class Replica:
    index: int
    port: int
    process: asyncio.subprocess.Process | None = None
    state: str = "new"  # new | starting | running | backoff | stopped
    restarts: int = 0
    started_at: float = 0.0
    last_exit: int | None = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ReplicaSupervisor:
    def __init__(self, spec: ReplicaSpec, *, clock: Clock | None = None) -> None:
        if spec.replicas < 1:
            raise ValueError("replicas must be at least 1")
        if spec.ports and len(spec.ports) != spec.replicas:
            raise ValueError(f"{len(spec.ports)} ports given for {spec.replicas} replicas")
        self.spec = spec
        self.clock = clock or MonotonicClock()
        ports = list(spec.ports) or [free_port(spec.host) for _ in range(spec.replicas)]
        self.replicas = [Replica(i, port) for i, port in enumerate(ports)]
        self._watchers: dict[int, asyncio.Task[None]] = {}
        self._probes: set[asyncio.Task[bool]] = set()
        self._stopping = False
        self._config_files: dict[int, str] = {}

    def url(self, replica: Replica) -> str:
        return f"http://{self.spec.host}:{replica.port}"

    def deployments(self) -> list[Deployment]:
        """One openai-compatible deployment per replica, health-checked."""
        return [
            Deployment(
                name=f"{self.spec.group}/replica-{r.index}",
                provider="openai",
                model=self.spec.model,
                api_base=self.url(r) + "/v1",
                max_concurrency=self.spec.max_concurrency,
                options={"health_url": self.url(r) + self.spec.health_path},
            )
            for r in self.replicas
        ]

    def _argv(self, replica: Replica) -> list[str]:
        values = {
            "port": str(replica.port),
            "host": self.spec.host,
            "index": str(replica.index),
            "python": sys.executable,
            "config": self._config_files.get(replica.index, ""),
        }
        return [part.format(**values) for part in self.spec.command]

    async def _spawn(self, replica: Replica) -> None:
        env = {**os.environ, **self.spec.env}
        out: Any = asyncio.subprocess.DEVNULL
        if self.spec.log_dir:
            os.makedirs(self.spec.log_dir, exist_ok=True)
            out = open(os.path.join(self.spec.log_dir, f"replica-{replica.index}.log"), "ab")  # noqa: SIM115
        try:
            replica.process = await asyncio.create_subprocess_exec(
                *self._argv(replica),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            if out is not asyncio.subprocess.DEVNULL:
                out.close()
        replica.state = "starting"
        replica.started_at = self.clock.now()

    async def start(self, count: int | None = None) -> None:
        """Start the first ``count`` replicas (all by default) and wait (up to ``ready_timeout``)
        until they answer health checks; the others stay stopped until :meth:`start_replica`."""
        self._stopping = False
        if self.spec.child_config is not None and not self._config_files:
            self._config_files = {
                r.index: _write_child_config(self.spec.child_config, r.index) for r in self.replicas
            }
        chosen = self.replicas if count is None else self.replicas[:count]
        for replica in self.replicas:
            if replica not in chosen:
                replica.state = "stopped"
        await asyncio.gather(*(self.start_replica(r.index) for r in chosen))

    async def start_replica(self, index: int) -> bool:
        """Start one stopped replica and wait until it answers its health check."""
        replica = self.replicas[index]
        if replica.index in self._watchers:
            return replica.state == "running"
        await self._spawn(replica)
        self._watchers[index] = asyncio.get_running_loop().create_task(self._watch(replica))
        return await self.wait_ready(replica)

    async def stop_replica(self, index: int) -> None:
        """Stop one replica for good (until started again): no restart."""
        replica = self.replicas[index]
        watcher = self._watchers.pop(index, None)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await self._stop(replica)

    async def wait_ready(self, replica: Replica, timeout: float | None = None) -> bool:
        limit = self.spec.ready_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        while loop.time() < end and not self._stopping and replica.state != "stopped":
            status, _ = await http_probe(self.url(replica) + self.spec.health_path, 1.0)
            if status is not None and 200 <= status < 300:
                replica.state = "running"
                return True
            await asyncio.sleep(0.05)
        return False

    def backoff(self, replica: Replica, uptime: float) -> float:
        """Exponential in consecutive quick crashes; reset after ``stable_after`` of uptime."""
        if uptime >= self.spec.stable_after:
            replica.restarts = 0
        delay = self.spec.restart_backoff * (2**replica.restarts)
        return float(min(self.spec.restart_backoff_max, delay))

    async def _watch(self, replica: Replica) -> None:
        while not self._stopping:
            process = replica.process
            assert process is not None
            replica.last_exit = await process.wait()
            if self._stopping:
                return
            delay = self.backoff(replica, self.clock.now() - replica.started_at)
            replica.state = "backoff"
            replica.restarts += 1
            await self.clock.sleep(delay)
            if self._stopping:
                return
            await self._spawn(replica)
            probe = asyncio.get_running_loop().create_task(self.wait_ready(replica))
            self._probes.add(probe)
            probe.add_done_callback(self._probes.discard)

    def kill(self, index: int) -> None:
        """Kill one replica as a crash would (SIGKILL); the supervisor restarts it."""
        process = self.replicas[index].process
        if process is not None and process.returncode is None:
            process.kill()

    async def aclose(self) -> None:
        self._stopping = True
        tasks = [*self._watchers.values(), *self._probes]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watchers.clear()
        await asyncio.gather(*(self._stop(r) for r in self.replicas))
        for path in self._config_files.values():
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._config_files = {}

    async def _stop(self, replica: Replica) -> None:
        process = replica.process
        replica.state = "stopped"
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    def status(self) -> dict[str, Any]:
        return {
            "group": self.spec.group,
            "replicas": [
                {
                    "index": r.index,
                    "port": r.port,
                    "state": r.state,
                    "restarts": r.restarts,
                    "pid": r.process.pid if r.process else None,
                    "last_exit": r.last_exit,
                }
                for r in self.replicas
            ],
        }


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it if the supervisor dies, even by SIGKILL."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _write_child_config(data: Mapping[str, Any], index: int) -> str:
    """A YAML file for one replica; ``{index}`` in any string value becomes its number."""
    import tempfile

    import yaml

    def fill(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value.replace("{index}", str(index)) if isinstance(value, str) else value

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="thrifty-replica-", delete=False) as f:
        yaml.safe_dump(fill(data), f)
        return f.name


class SupervisedGroup(Wrapper):
    """A balanced group over supervised replicas: starts them first, stops them last."""

    def __init__(self, inner: Backend, supervisor: ReplicaSupervisor) -> None:
        super().__init__(inner)
        self.supervisor = supervisor

    async def start(self) -> None:
        await self.supervisor.start()
        await self.inner.start()

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            await self.supervisor.aclose()

    def status(self) -> dict[str, Any]:
        out = dict(self.inner.status()) if isinstance(self.inner, ReportsStatus) else {}
        out["supervisor"] = self.supervisor.status()
        return out


def wants_replicas(config: Config) -> bool:
    """Whether a group asks for elastic replicas (``autoscale:``) without ``--replicas``."""
    return any("autoscale" in g.options and _all_local(g) for g in config.models)


def _all_local(group: ModelGroup) -> bool:
    return bool(group.deployments) and all(d.provider == "local" for d in group.deployments)


def replica_config(config: Config, replicas: int) -> Config:
    """``config`` with each all-``local`` group served by ``replicas`` supervised processes.

    Each such group gets one ``openai`` deployment per replica (a free
    loopback port each) and a ``replicas`` option that :func:`build_group`
    turns into a :class:`ReplicaSupervisor` started with the group. A group
    with ``autoscale:`` gets ``max_replicas`` slots instead (``replicas`` may
    then be 0), of which its :class:`~.elastic.ElasticGroup` runs as many as
    the load needs.
    """
    from dataclasses import replace

    from .scaling import parse_scaling

    if replicas < 0 or (replicas == 0 and not wants_replicas(config)):
        raise config.where("replicas").error("must be at least 1")
    groups = []
    for group in config.models:
        count = replicas
        if "autoscale" in group.options and _all_local(group):
            where = Where(config.source, f"models[name={group.name}].autoscale")
            count = parse_scaling(group.options["autoscale"], where).max_replicas
        if not count or not _all_local(group):
            groups.append(group)
            continue
        local = group.deployments[0]
        # Each child keeps its own ledger, apart from the gateway's (which records every request).
        data_dir = os.path.join(config.server.data_dir, "replicas", f"{group.name}-{{index}}")
        child = {
            "server": {"data_dir": data_dir},
            "models": [
                {
                    "name": group.name,
                    "deployments": [
                        {"provider": "local", "model": local.model, "options": dict(local.options)}
                    ],
                }
            ],
        }
        spec = ReplicaSpec(
            group=group.name,
            model=group.name,
            replicas=count,
            command=(*SERVE_COMMAND, "--config", "{config}"),
            child_config=child,
            max_concurrency=local.max_concurrency,
            health_path="/ready",
        )
        supervisor_ports = [free_port(spec.host) for _ in range(count)]
        options = {
            "health_interval": 1.0,
            **group.options,
            "replicas": {
                "count": count,
                "ports": supervisor_ports,
                "model": group.name,
                "command": list(spec.command),
                "child_config": child,
                "health_path": spec.health_path,
            },
        }
        deployments = tuple(ReplicaSupervisor(replace(spec, ports=supervisor_ports)).deployments())
        groups.append(replace(group, deployments=deployments, options=options))
    return replace(config, models=tuple(groups))


def spec_from_options(group: ModelGroup, where: Where) -> ReplicaSpec:
    """The ``replicas`` group option as a :class:`ReplicaSpec`, validated."""
    raw = group.options.get("replicas")
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"count": raw}
    if not isinstance(raw, Mapping):
        raise where.error("must be a replica count or a mapping with 'count'")
    count = raw.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise (where / "count").error(f"must be a positive integer, got {count!r}")
    ports = raw.get("ports") or ()
    if not isinstance(ports, (list, tuple)) or not all(isinstance(p, int) for p in ports):
        raise (where / "ports").error("must be a list of port numbers")
    if ports and len(ports) != count:
        raise (where / "ports").error(f"lists {len(ports)} ports for {count} replicas")
    command = raw.get("command") or SERVE_COMMAND
    if not isinstance(command, (list, tuple)) or not all(isinstance(c, str) for c in command):
        raise (where / "command").error("must be a list of strings (use {port} and {host})")
    child = raw.get("child_config")
    if child is not None and not isinstance(child, Mapping):
        raise (where / "child_config").error("must be a mapping")
    health_path = raw.get("health_path", "/health")
    if not isinstance(health_path, str) or not health_path.startswith("/"):
        raise (where / "health_path").error(f"must be a path starting with '/', got {health_path!r}")
    model = raw.get("model", group.name)
    return ReplicaSpec(
        group=group.name,
        model=str(model),
        replicas=count,
        command=tuple(command),
        ports=tuple(ports),
        child_config=child,
        health_path=health_path,
    )
