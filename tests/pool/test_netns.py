"""Several hosts: the gateway (with Redis) and three workers, each in its own network namespace,
joined by veth links on 10.77.x.x made and removed by this test (root only).

One worker cannot be reached inbound (from the gateway's host nothing can open a connection to
it, as behind a NAT; done with policy routing): it still serves, because it only ever connects out. The workers differ: one lacks the
model, one is slow, one is fast; the fast one answers, and when it is SIGKILLed mid-task the slow
one does, never the one without the model.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import allow_link

from .conftest import ADMIN

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root"
    ),
]
PORT = 8000


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


class Hosts:
    """Namespaces ``<tag>-gw`` and ``<tag>-w1..3``; a veth from the test's namespace to the
    gateway's (10.77.R.1 / .2) and one from each worker's to the gateway's (10.77.R.4i+1 / +2)."""

    def __init__(self, root: Path) -> None:
        self.tag = f"thr{random.randrange(16**4):04x}"
        self.octet = random.randrange(256)
        self.root = root
        self.names: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def address(self, link: int, side: int) -> str:
        return f"10.77.{self.octet}.{4 * link + side}"

    def make(self) -> None:
        gw = self.ns("gw")
        sh("ip", "link", "add", f"{self.tag}t", "type", "veth", "peer", "name", f"{self.tag}g0")
        sh("ip", "link", "set", f"{self.tag}g0", "netns", gw)
        sh("ip", "addr", "add", f"{self.address(0, 1)}/30", "dev", f"{self.tag}t")
        sh("ip", "link", "set", f"{self.tag}t", "up")
        sh("ip", "-n", gw, "addr", "add", f"{self.address(0, 2)}/30", "dev", f"{self.tag}g0")
        sh("ip", "-n", gw, "link", "set", f"{self.tag}g0", "up")
        for i in (1, 2, 3):
            worker = self.ns(f"w{i}")
            sh(
                "ip",
                "link",
                "add",
                f"{self.tag}g{i}",
                "netns",
                gw,
                "type",
                "veth",
                "peer",
                "name",
                f"{self.tag}w{i}",
                "netns",
                worker,
            )
            sh("ip", "-n", gw, "addr", "add", f"{self.address(i, 1)}/30", "dev", f"{self.tag}g{i}")
            sh("ip", "-n", gw, "link", "set", f"{self.tag}g{i}", "up")
            sh("ip", "-n", worker, "addr", "add", f"{self.address(i, 2)}/30", "dev", f"{self.tag}w{i}")
            sh("ip", "-n", worker, "link", "set", f"{self.tag}w{i}", "up")

    def no_inbound(self, i: int) -> None:
        """Nothing in the gateway's namespace can open a connection to worker ``i``: packets to it
        are routed only when they come from the gateway's listening port (answers on connections
        the worker opened); anything else towards it is prohibited (netfilter is not available
        here, so this is done with policy routing)."""
        gw, worker = f"{self.tag}-gw", self.address(i, 2)
        sh(
            "ip",
            "-n",
            gw,
            "rule",
            "add",
            "to",
            worker,
            "ipproto",
            "tcp",
            "sport",
            str(PORT),
            "lookup",
            "main",
            "pref",
            "100",
        )
        sh("ip", "-n", gw, "rule", "add", "to", worker, "prohibit", "pref", "101")

    def ns(self, name: str) -> str:
        full = f"{self.tag}-{name}"
        sh("ip", "netns", "add", full)
        self.names.append(full)
        sh("ip", "-n", full, "link", "set", "lo", "up")
        return full

    def run(self, ns: str, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.root / log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(["ip", "netns", "exec", f"{self.tag}-{ns}", *args], stdout=out, stderr=out)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "link", "del", f"{self.tag}t"], capture_output=True)
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    made = Hosts(tmp_path)
    try:
        made.make()
    except subprocess.CalledProcessError as exc:
        made.close()
        pytest.skip(f"cannot make network namespaces here: {exc.stderr.decode().strip()}")
    try:
        with allow_link(f"10.77.{made.octet}.0/24"):
            yield made
    finally:
        made.close()


def call(url: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    with urllib.request.urlopen(
        urllib.request.Request(url + path, data=data, headers=headers), timeout=60
    ) as r:
        return json.loads(r.read())


def test_workers_on_other_hosts_behind_no_inbound_path_serve_by_capability_and_migrate(hosts: Hosts) -> None:
    redis = shutil.which("redis-server") or "/usr/bin/redis-server"
    hosts.run(
        "gw",
        [redis, "--port", "6379", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        "redis.log",
    )
    cfg = hosts.root / "gw.yaml"
    cfg.write_text(
        f"server: {{api_keys: [{ADMIN}], host: 0.0.0.0, port: {PORT}, data_dir: {hosts.root}}}\n"
        "models: [{name: smollm2, deployments: [{provider: pool, model: smollm2}]}]\n"
        'pool: {redis_url: "redis://127.0.0.1:6379/0", heartbeat: 0.5, grace: 0.4, lease_wait: 5}\n'
    )
    hosts.run("gw", [sys.executable, "-m", "thrifty", "serve", "-c", str(cfg)], "gw.log")
    url = f"http://{hosts.address(0, 2)}:{PORT}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/ready", timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, (hosts.root / "gw.log").read_text()
            time.sleep(0.1)

    hosts.no_inbound(3)
    workers = {}
    for i, (name, model, speed) in enumerate(
        (("no-model", "other", 5000), ("slow", "smollm2", 10), ("fast", "smollm2", 400)), 1
    ):
        token = call(url, "/admin/pool/tokens", {"name": name})["token"]
        join = f"http://{hosts.address(i, 1)}:{PORT}"  # the gateway, as seen from worker i's link
        args = [sys.executable, "-m", "thrifty", "worker", "--join", join, "--token", token, "--model", model]
        args += [
            "--tokens-per-s",
            str(speed),
            "--fake",
            f"from {name}",
            "--fake-delay",
            "2" if name == "fast" else "0",
        ]
        workers[name] = hosts.run(f"w{i}", args, f"{name}.log")
    while sum(w["state"] == "active" for w in call(url, "/admin/pool/workers")["workers"]) < 3:
        assert time.monotonic() < deadline + 60
        time.sleep(0.1)

    def connect_from_gateway(i: int) -> str:
        probe = f"import socket; socket.create_connection(('{hosts.address(i, 2)}', 9), timeout=2)"
        done = subprocess.run(
            ["ip", "netns", "exec", f"{hosts.tag}-gw", sys.executable, "-c", probe], capture_output=True
        )
        return done.stderr.decode().strip().splitlines()[-1]

    assert "ConnectionRefusedError" in connect_from_gateway(2)  # reachable, nothing listening
    assert "PermissionError" in connect_from_gateway(3)  # no way in at all: the route is prohibited

    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}
    assert call(url, "/v1/chat/completions", body)["choices"][0]["message"]["content"] == "from fast"
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(call(url, "/v1/chat/completions", body)))
    thread.start()
    deadline = time.monotonic() + 20
    while not any(w["name"] == "fast" and w["active"] for w in call(url, "/admin/pool/workers")["workers"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers["fast"].send_signal(signal.SIGKILL)
    thread.join(30)
    assert box and box[0]["choices"][0]["message"]["content"] == "from slow"
