"""A real pool for the tests: redis-server, `thrifty serve` processes with `provider: pool`, and
`thrifty worker` processes (a scripted answer, or the embedded model), all on loopback."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.processes import free_port, stop, wait_ready

ADMIN = "sk-admin-pool"
HEARTBEAT = 0.5
GRACE = 0.4


def call(
    url: str,
    path: str,
    body: Any = None,
    key: str | None = ADMIN,
    method: str | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class PoolCluster:
    """Gateways and workers around one Redis; everything started here is stopped at the end."""

    def __init__(self, root: Path, redis_url: str) -> None:
        self.root = root
        self.redis_url = redis_url
        self.procs: list[subprocess.Popen[bytes]] = []
        self.gateways: dict[str, tuple[int, Path, subprocess.Popen[bytes]]] = {}

    def config(self, name: str, port: int, models: str = "smollm2") -> Path:
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        cfg = folder / "thrifty.yaml"
        groups = "\n".join(
            f"  - name: {m}\n    deployments: [{{provider: pool, model: {m}}}]" for m in models.split(",")
        )
        cfg.write_text(
            f"server: {{api_keys: [{ADMIN}], data_dir: {folder}, port: {port}}}\n"
            f"models:\n{groups}\n"
            f'pool: {{redis_url: "{self.redis_url}", heartbeat: {HEARTBEAT}, grace: {GRACE}, lease_wait: 5}}\n'
        )
        return cfg

    def gateway(self, name: str = "gw", port: int | None = None, models: str = "smollm2") -> str:
        port = port or free_port()
        cfg = self.config(name, port, models)
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "thrifty", "serve", "-c", str(cfg)], stdout=log, stderr=log
        )
        self.procs.append(proc)
        self.gateways[name] = (port, cfg, proc)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/ready", proc)
        return url

    def stop_gateway(self, name: str = "gw") -> None:
        stop(self.gateways[name][2])

    def log(self, name: str = "gw") -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def ledger(self, name: str = "gw") -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.root / name / "ledger.db")
        try:
            return list(db.execute("SELECT request_id, status, deployment FROM requests"))
        finally:
            db.close()

    def token(self, url: str, name: str) -> str:
        status, made = call(url, "/admin/pool/tokens", {"name": name})
        assert status == 201, made
        return str(made["token"])

    def worker(
        self,
        url: str,
        name: str,
        *,
        fake: str | None = None,
        delay: float = 0.0,
        speed: float = 100.0,
        model: str = "smollm2",
        concurrency: int = 1,
        token: str | None = None,
    ) -> subprocess.Popen[bytes]:
        args = [
            sys.executable,
            "-m",
            "thrifty",
            "worker",
            "--join",
            url,
            "--token",
            token or self.token(url, name),
        ]
        args += ["--model", model, "--concurrency", str(concurrency), "--tokens-per-s", str(speed)]
        if fake is not None:
            args += ["--fake", fake, "--fake-delay", str(delay)]
        log = open(self.root / f"worker-{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs.append(proc)
        return proc

    def script(self, url: str, name: str, script: Path, *extra: str) -> subprocess.Popen[bytes]:
        """A worker written against the reference client (``script`` takes --join --token)."""
        args = [sys.executable, str(script), "--join", url, "--token", self.token(url, name), *extra]
        log = open(self.root / f"worker-{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def wait_workers(self, url: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            status, overview = call(url, "/admin/pool/workers")
            active = [w for w in overview.get("workers", []) if w["state"] == "active"]
            if status == 200 and len(active) >= count:
                time.sleep(0.3)  # every replica's view has it after one sweep
                return active
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} workers did not join: {overview}")
            time.sleep(0.1)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str) -> Iterator[PoolCluster]:
    running = PoolCluster(tmp_path, redis_url)
    try:
        yield running
    finally:
        running.close()


def chat(url: str, text: str = "hello", model: str = "smollm2", **extra: Any) -> tuple[int, dict[str, Any]]:
    return call(
        url,
        "/v1/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": text}], **extra},
    )
