"""`thrifty serve --workers N`: N processes on one port, a dead worker replaced, nothing lost at stop."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _ask(port: int) -> int:
    body = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return int(r.status)


def _wait(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, sqlite3.Error):  # not up yet, or the ledger not created yet
            pass
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_workers_share_the_port_replace_a_dead_one_and_drain_at_stop(tmp_path: Path, free_port: int) -> None:
    cfg = tmp_path / "thrifty.yaml"
    cfg.write_text(
        f"server: {{data_dir: {tmp_path}}}\nmodels:\n  - name: fast\n"
        "    deployments: [{provider: fake, model: x}]\n"
    )
    thrifty = str(Path(sys.executable).parent / "thrifty")
    proc = subprocess.Popen(
        [thrifty, "serve", "--config", str(cfg), "--port", str(free_port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait(lambda: len(_children(proc.pid)) == 2 and _ask(free_port) == 200)
        answered = sum(_ask(free_port) == 200 for _ in range(10)) + 1
        _wait(lambda: _rows(tmp_path) == answered)  # written by the workers' ledger threads
        first = _children(proc.pid)
        os.kill(first[0], signal.SIGKILL)
        _wait(lambda: len(_children(proc.pid)) == 2 and first[0] not in _children(proc.pid))
        _wait(lambda: _ask(free_port) == 200)
        answered += 1 + sum(_ask(free_port) == 200 for _ in range(10))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0
    assert _rows(tmp_path) == answered  # the workers drained their ledgers at SIGTERM


def _rows(folder: Path) -> int:
    db = sqlite3.connect(folder / "ledger.db")
    try:
        return int(db.execute("SELECT count(*) FROM requests WHERE status = 200").fetchone()[0])
    finally:
        db.close()
