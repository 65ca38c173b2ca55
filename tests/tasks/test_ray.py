"""Batches on a real local Ray cluster: a head and worker nodes on loopback.

Each node is a `ray start --block` process group started here, and killed
here by its own id in teardown (never `ray stop`, which would stop every Ray
on the machine). Bounded by the test timeout.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from thrifty.tasks.batch_job import FileJob, JobSettings, run_file_job
from thrifty.tasks.cli import batch_main
from thrifty.tasks.ray_engine import RayEngine
from thrifty.testing import FakeBackend
from thrifty.types import ChatRequest, message_text

ray = pytest.importorskip("ray")
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]
COMMON = ["--num-cpus", "1", "--object-store-memory", "80000000", "--disable-usage-stats", "--block"]


class Node:
    """One `ray start --block` process group."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [RAY, "start", *args, *COMMON], stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, sig: int = signal.SIGKILL, family: list[int] | None = None) -> None:
        """Signal the node's process group and every process it spawned (Ray workers may leave the group)."""
        family = descendants(self.proc.pid) if family is None else family
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self) -> None:
        family = descendants(self.proc.pid)
        self.kill(signal.SIGTERM, family)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.kill(signal.SIGKILL, family)
        self.proc.wait(timeout=10)
        self.log.close()


def descendants(root: int) -> list[int]:
    """Every live process below ``root``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_nodes(n: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for node in ray.nodes() if node["Alive"]) >= n:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the Ray cluster did not reach {n} nodes in {timeout:.0f} s")


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.temp = tempfile.mkdtemp(prefix="thr-ray-", dir="/tmp")
        self.address = f"127.0.0.1:{free_port()}"
        self.nodes: list[Node] = []

    def add(self, resources: dict[str, float], *, head: bool = False) -> Node:
        where = (
            [
                "--head",
                "--port",
                self.address.rsplit(":", 1)[1],
                "--include-dashboard",
                "false",
                "--temp-dir",
                self.temp,
            ]
            if head
            else ["--address", self.address]
        )
        args = [*where, "--node-ip-address", "127.0.0.1", "--resources", json.dumps(resources)]
        node = Node(args, self.root / f"node{len(self.nodes)}.log")
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("ray"))
    try:
        c.add({"cloud_api": 1}, head=True)  # a thin node: cloud APIs only
        time.sleep(3)
        c.add({"cloud_api": 1, "local_model": 1})  # holds a local model
        ray.init(address=c.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        wait_for_nodes(2)
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.stop()


def line(custom_id: str, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": custom_id}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def write_batch(path: Path, ids_models: list[tuple[str, str]]) -> str:
    path.write_text("\n".join(line(i, m) for i, m in ids_models) + "\n")
    return str(path)


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def node_with(resource: str) -> str:
    ids = [n["NodeID"] for n in ray.nodes() if n["Alive"] and resource in n["Resources"]]
    assert len(ids) == 1
    return str(ids[0])


async def test_each_model_runs_on_nodes_that_have_its_resources(cluster: Cluster, tmp_path: Path) -> None:
    work = [(f"l{i}", "local") for i in range(12)] + [(f"c{i}", "cloud") for i in range(12)]
    src = write_batch(tmp_path / "in.jsonl", work)
    job = FileJob(src, str(tmp_path / "out.jsonl"), str(tmp_path / "err.jsonl"), str(tmp_path / "s.db"))
    engine = RayEngine(
        cluster.address,
        FakeBackend("from ray", delay=0.01),
        JobSettings(concurrency=8),
        resources={"local": {"local_model": 1}, "*": {"cloud_api": 1}},
        chunk_size=4,
    )
    counts = await run_file_job(job, engine)
    assert counts["completed"] == 24 and counts["failed"] == 0
    assert sorted(r["custom_id"] for r in read(tmp_path / "out.jsonl")) == sorted(i for i, _ in work)
    local_node = node_with("local_model")
    assert {node for model, node in engine.placements if model == "local"} == {local_node}


def record_start(log: str, request: ChatRequest) -> str:
    """Log which node began which request (this function travels to the workers by value)."""
    import ray as worker_ray

    node = worker_ray.get_runtime_context().get_node_id()
    with open(log, "a") as f:
        f.write(f"{message_text(request.messages[-1])} {node}\n")
    return "survived"


async def test_a_lost_nodes_chunks_are_retried_elsewhere(cluster: Cluster, tmp_path: Path) -> None:
    import asyncio

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    log = tmp_path / "starts.log"
    log.touch()
    victim = cluster.add({"cloud_api": 1, "victim": 1})
    wait_for_nodes(3)
    victim_id = node_with("victim")
    src = write_batch(tmp_path / "in.jsonl", [(f"r{i}", "cloud") for i in range(12)])
    job = FileJob(src, str(tmp_path / "out.jsonl"), str(tmp_path / "err.jsonl"), str(tmp_path / "s.db"))
    backend = FakeBackend(functools.partial(record_start, str(log)), delay=1.0)
    engine = RayEngine(
        cluster.address, backend, JobSettings(concurrency=1), resources={"*": {"cloud_api": 1}}, chunk_size=2
    )

    async def kill_when_victim_works() -> None:
        while victim_id not in log.read_text():
            await asyncio.sleep(0.1)
        victim.kill()

    killer = asyncio.create_task(kill_when_victim_works())
    counts = await asyncio.wait_for(run_file_job(job, engine), timeout=150)
    await asyncio.wait_for(killer, timeout=1)
    assert counts["completed"] == 12 and counts["failed"] == 0
    starts = [row.split() for row in log.read_text().splitlines()]
    on_victim = {rid for rid, node in starts if node == victim_id}
    assert on_victim  # the victim had work when it died
    finished_on = {node for _model, node in engine.placements}
    assert victim_id not in finished_on  # ...and that work was finished by other nodes
    assert all(any(r == rid and n != victim_id for r, n in starts) for rid in on_victim)


def test_the_cli_runs_a_batch_on_ray(cluster: Cluster, tmp_path: Path) -> None:
    src = write_batch(tmp_path / "in.jsonl", [(f"q{i}", "cloud") for i in range(6)])
    out = tmp_path / "out.jsonl"
    code = batch_main(["run", src, "-o", str(out), "--ray", cluster.address, "-q"], backend=FakeBackend("hi"))
    assert code == 0
    assert len(read(out)) == 6
