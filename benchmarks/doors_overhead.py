"""What /v1/responses and /v1/completions cost beside /v1/chat/completions, in one run.

One instant fake upstream (``thrifty.fakeupstream``) and one ``thrifty serve`` in
front of it; wrk (1 thread, keep-alive) loads each route in turn, rounds
interleaved, and the median of each cell is kept. Every route ends in the same
upstream chat call, so the difference is the translation (and, for
``store: true``, handing the stored row to the store's thread). The upstream
itself, loaded directly, is the floor.

    .venv/bin/python benchmarks/doors_overhead.py [--seconds 5] [--rounds 3] [--connections 10]
        [--before OLD/src] [--out docs/bench/doors.md]

``--before`` names the ``src`` folder of an older checkout (``git archive REV src | tar -x``):
a second ``thrifty serve`` runs from it, its cells interleaved with the current ones in the
same rounds, and the in-process part runs for both, so a change is measured before and after
in one run. In-process times are CPU time (``time.process_time``: the store's thread
included), which the machine's load moves far less than wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from wrk import run as run_wrk  # benchmarks/ is on the path when this script runs

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
KEY = "sk-bench-doors"
PROMPT = "Say ok."

CASES: list[tuple[str, str, dict[str, object]]] = [
    ("upstream direct, chat", "direct", {"model": "fake", "messages": [{"role": "user", "content": PROMPT}]}),
    (
        "chat completions",
        "/v1/chat/completions",
        {"model": "fake", "messages": [{"role": "user", "content": PROMPT}]},
    ),
    ("responses (store: true)", "/v1/responses", {"model": "fake", "input": PROMPT}),
    ("responses (store: false)", "/v1/responses", {"model": "fake", "input": PROMPT, "store": False}),
    ("completions (legacy)", "/v1/completions", {"model": "fake", "prompt": PROMPT}),
    (
        "upstream direct, chat stream",
        "direct",
        {"model": "fake", "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
    ),
    (
        "chat completions stream",
        "/v1/chat/completions",
        {"model": "fake", "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
    ),
    ("responses stream (store: true)", "/v1/responses", {"model": "fake", "input": PROMPT, "stream": True}),
    (
        "responses stream (store: false)",
        "/v1/responses",
        {"model": "fake", "input": PROMPT, "stream": True, "store": False},
    ),
]
BASELINE = {False: "chat completions", True: "chat completions stream"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout} s")


@contextlib.contextmanager
def process(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk(url: str, body: dict[str, object], connections: int, seconds: int) -> dict[str, float]:
    return run_wrk(url, connections, seconds, body, key=KEY)


def check(url: str, body: dict[str, object]) -> None:
    """One request by hand: the route answers 200 before it is loaded."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {KEY}"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200, r.status
        r.read()


def in_process(rounds: int, per_round: int = 2000) -> dict[str, float]:
    """Microseconds of gateway CPU per request: the ASGI app called in process over a scripted backend.

    No sockets and no upstream: what is left is thrifty's own work on each route
    (read, validate, translate, gateway, write). Rounds interleave the routes; the
    median round is kept.
    """
    import asyncio

    from thrifty.config import parse_config
    from thrifty.gateway import Gateway
    from thrifty.server.app import create_app
    from thrifty.testing import FakeBackend

    async def run() -> dict[str, float]:
        folder = tempfile.mkdtemp()
        config = parse_config(
            {
                "server": {"data_dir": folder},
                "models": [{"name": "fake", "deployments": [{"provider": "fake", "model": "x"}]}],
            },
            source="bench",
            environ={},
        )
        gateway = Gateway(config, backends={"fake": FakeBackend("ok ok ok ok ok ok ok ok")}, observe=False)
        app = create_app(gateway)
        await gateway.start()

        async def call(path: str, raw: bytes) -> None:
            messages = [{"type": "http.request", "body": raw, "more_body": False}]
            status: list[int] = []

            async def receive() -> dict[str, object]:
                if messages:
                    return messages.pop()
                await asyncio.sleep(3600)
                return {"type": "http.disconnect"}

            async def send(message: dict[str, object]) -> None:
                if message["type"] == "http.response.start":
                    status.append(int(message["status"]))  # type: ignore[call-overload]

            scope = {
                "type": "http",
                "method": "POST",
                "path": path,
                "query_string": b"",
                "root_path": "",
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                ],
                "http_version": "1.1",
                "scheme": "http",
                "server": ("127.0.0.1", 80),
                "client": ("127.0.0.1", 1),
            }
            await app(scope, receive, send)  # type: ignore[arg-type]
            assert status == [200], status

        cases = [(name, path, json.dumps(body).encode()) for name, path, body in CASES if path != "direct"]
        times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        for _name, path, raw in cases:
            for _ in range(200):
                await call(path, raw)
        for _ in range(rounds):
            for name, path, raw in cases:
                start = time.process_time()
                for _ in range(per_round):
                    await call(path, raw)
                times[name].append((time.process_time() - start) / per_round * 1e6)
        await gateway.aclose()
        shutil.rmtree(folder, ignore_errors=True)
        return {name: statistics.median(t) for name, t in times.items()}

    return asyncio.run(run())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--out", default=None)
    p.add_argument("--before", default=None, help="src folder of an older checkout, measured in the same run")
    p.add_argument(
        "--in-process", action="store_true", help=argparse.SUPPRESS
    )  # one tree's CPU table, as JSON
    args = p.parse_args()
    if args.in_process:
        print(json.dumps(in_process(max(args.rounds, 5))))
        return 0
    if not shutil.which("wrk"):
        print("wrk is required: apt-get install -y wrk", file=sys.stderr)
        return 1
    thrifty = str(Path(PY).parent / "thrifty")
    up_port = free_port()
    folder = Path(tempfile.mkdtemp())
    upstream = f"http://127.0.0.1:{up_port}/v1"
    trees = {"": None} if args.before is None else {"before": args.before, "": None}
    samples: dict[str, list[dict[str, float]]] = {}
    load = [_loadavg()]
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            process([PY, "-m", "thrifty.fakeupstream", "--port", str(up_port), "--chunks", "8"])
        )
        wait_ready(f"http://127.0.0.1:{up_port}/health")
        urls: dict[str, str] = {}
        bodies: dict[str, dict[str, object]] = {}
        for tree, src in trees.items():
            port = free_port()
            data = folder / (tree or "after")
            data.mkdir()
            (data / "thrifty.yaml").write_text(
                f"server: {{api_keys: [{KEY}], data_dir: {data}}}\n"
                f"model_list:\n  - model_name: fake\n    litellm_params: {{model: openai/fake, api_base: {upstream}, api_key: sk-up}}\n"
            )
            cmd = [
                thrifty,
                "serve",
                "--config",
                str(data / "thrifty.yaml"),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
            stack.enter_context(process(cmd, _env(src)))
            wait_ready(f"http://127.0.0.1:{port}/ready")
            for name, path, body in CASES:
                if path == "direct" and tree:
                    continue  # the upstream is the same for both trees
                cell = f"{name} ({tree})" if tree else name
                urls[cell] = (
                    upstream + "/chat/completions" if path == "direct" else f"http://127.0.0.1:{port}{path}"
                )
                bodies[cell] = body
        samples = {cell: [] for cell in urls}
        for cell, url in urls.items():
            check(url, bodies[cell])
            wrk(url, bodies[cell], args.connections, 1)  # warm up
        for _ in range(args.rounds):
            for cell, url in urls.items():
                samples[cell].append(wrk(url, bodies[cell], args.connections, args.seconds))
    load.append(_loadavg())
    cpu = {}
    for _ in range(2):  # the trees alternate, twice: each table is the median of its runs' medians
        for tree, src in trees.items():
            one = subprocess.run(
                [PY, __file__, "--in-process", "--rounds", str(args.rounds)],
                env=_env(src),
                capture_output=True,
                text=True,
                check=True,
            )
            for name, us in json.loads(one.stdout).items():
                cpu.setdefault(f"{name} ({tree})" if tree else name, []).append(us)
    load.append(_loadavg())
    report = render(samples, bodies, args, {k: statistics.median(v) for k, v in cpu.items()}, load)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    shutil.rmtree(folder, ignore_errors=True)
    return 0


def _env(src: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(Path(src).resolve())
    return env


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def render(
    samples: dict[str, list[dict[str, float]]],
    bodies: dict[str, dict[str, object]],
    args: argparse.Namespace,
    cpu: dict[str, float],
    load: list[str],
) -> str:
    def median(name: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[name])

    def baseline(cell: str) -> str:
        base = BASELINE[bool(bodies[cell].get("stream"))]  # the chat cell of the same tree
        return base + " (before)" if cell.endswith(" (before)") else base

    lines = [
        "| route | requests/s | p50 ms | p99 ms | errors | requests/s vs chat | p50 vs chat |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in samples:
        rps, p50 = median(cell, "rps"), median(cell, "p50_ms")
        errors = sum(int(s["errors"]) for s in samples[cell])
        base = baseline(cell)
        lines.append(
            f"| {cell} | {rps:,.0f} | {p50:.2f} | {median(cell, 'p99_ms'):.2f} | {errors} "
            f"| {rps / median(base, 'rps'):.2f} | {p50 / median(base, 'p50_ms'):.2f} |"
        )
    head = [
        f"Measured {datetime.date.today().isoformat()} on {platform.node()} ({os.cpu_count()} cores, "
        f"{platform.python_version()}, {platform.machine()}), shared with other work.",
        f"Command: `{' '.join(['python', 'benchmarks/doors_overhead.py', *sys.argv[1:]])}`",
        f"Load: wrk, 1 thread, {args.connections} connections, keep-alive, {args.seconds} s per cell, "
        f"{args.rounds} rounds interleaved, medians; upstream: thrifty.fakeupstream, no latency, 8 chunks.",
        f"Load average (1, 5, 15 min) at the start, after wrk, at the end: {' / '.join(load)}.",
        "",
    ]
    cpu_lines = [
        "",
        "In process (no sockets, scripted backend, 2,000 requests a round, median round, two runs per "
        "tree alternating): thrifty's own CPU time per request, the store's thread included.",
        "",
        "| route | µs per request | vs chat |",
        "|---|---:|---:|",
    ]
    for cell, us in cpu.items():
        bodies_of = {name: body for name, _, body in CASES}
        name = cell.removesuffix(" (before)")
        base = BASELINE[bool(bodies_of[name].get("stream"))] + cell[len(name) :]
        cpu_lines.append(f"| {cell} | {us:.0f} | {us / cpu[base]:.2f} |")
    return "\n".join(head + lines + cpu_lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
