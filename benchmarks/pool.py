"""The device pool (issue 19): dispatch overhead, migration time, throughput by worker count, and the
capability matcher against an oracle.

Everything runs on this machine over loopback: a private redis-server, `thrifty serve` processes and
`thrifty worker` processes.

  overhead     sequential requests (one keep-alive connection). The pool's own cost is isolated with
               an instant scripted answer: gateway -> `provider: fake` in process, against gateway ->
               `provider: pool` -> a worker with the same instant answer. Then the real model:
               SmolLM2 through llama.cpp called in process (LocalBackend.complete, max_tokens 8),
               against the same model behind gateway -> pool -> worker.
  migration    two workers; the one holding a task is SIGKILLed; time from the kill to the answer
               (from the other worker). Goal: heartbeat + 1 s.
  throughput   1, 2, 3 workers; 8 client threads. Workers with a 50 ms scripted answer (the pool's
               scaling when work does not use the CPU) and real SmolLM2 workers (two cores).
  matcher      simulated pools: each worker's true speed, its advertised speed off by up to ±30 %,
               random load and context; the matcher's pick against the oracle that knows true speeds.

    .venv/bin/python benchmarks/pool.py [--quick] [--out docs/bench/pool.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
PY = sys.executable
ADMIN = "sk-bench-pool"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, path: str, body: Any = None, method: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())


class Rig:
    """redis-server, gateways and workers in a temp dir; all stopped on exit."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="thrifty-pool-bench-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        port = free_port()
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.spawn([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.3)

    def spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        self.procs.append(proc)
        return proc

    def gateway(self, provider: str, heartbeat: float = 1.0) -> str:
        port = free_port()
        folder = self.dir / f"gw{port}"
        folder.mkdir()
        deployment = (
            "{provider: fake, model: m, options: {script: ok}}"
            if provider == "fake"
            else "{provider: pool, model: smollm2}"
        )
        (folder / "c.yaml").write_text(
            f"server: {{api_keys: [{ADMIN}], data_dir: {folder}, port: {port}}}\n"
            f"models: [{{name: smollm2, deployments: [{deployment}]}}]\n"
            + (
                f'pool: {{redis_url: "{self.redis_url}", heartbeat: {heartbeat}, grace: 0.5}}\n'
                if provider == "pool"
                else ""
            )
        )
        self.spawn([PY, "-m", "thrifty", "serve", "-c", str(folder / "c.yaml")])
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/ready", timeout=2):
                    return url
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def worker(
        self, url: str, name: str, *extra: str, token: str | None = None
    ) -> tuple[subprocess.Popen[bytes], str]:
        token = token or call(url, "/admin/pool/tokens", {"name": name})["token"]
        args = [PY, "-m", "thrifty", "worker", "--join", url, "--token", token, "--model", "smollm2", *extra]
        return self.spawn(args), token

    def wait_workers(self, url: str, count: int) -> None:
        deadline = time.monotonic() + 180
        while sum(w["state"] == "active" for w in call(url, "/admin/pool/workers")["workers"]) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not join")
            time.sleep(0.1)
        time.sleep(0.5)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def rig() -> Iterator[Rig]:
    made = Rig()
    try:
        yield made
    finally:
        made.close()


BODY = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}


def sequential(url: str, count: int) -> list[float]:
    """Latency (ms) of ``count`` requests one after another on one keep-alive connection."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    payload = json.dumps(BODY)
    headers = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    times = []
    for _ in range(count):
        began = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", payload, headers)
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
        times.append((time.perf_counter() - began) * 1000)
    conn.close()
    return times[len(times) // 10 :]  # the first tenth warms up


def in_process_llama(count: int) -> list[float]:
    from thrifty.config import Deployment
    from thrifty.providers.local import LocalBackend
    from thrifty.validate import chat_request

    async def run() -> list[float]:
        backend = LocalBackend(Deployment(name="local", provider="local", model="smollm2"))
        await backend.start()
        times = []
        for _ in range(count):
            began = time.perf_counter()
            await backend.complete(chat_request(BODY))
            times.append((time.perf_counter() - began) * 1000)
        await backend.aclose()
        return times[len(times) // 10 :]

    return asyncio.run(run())


def overhead(count: int, llama_count: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    with rig() as r:
        url = r.gateway("fake")
        out["gateway -> fake in process"] = sequential(url, count)
        url = r.gateway("pool")
        r.worker(url, "instant", "--fake", "ok", "--tokens-per-s", "100")
        r.wait_workers(url, 1)
        out["gateway -> pool -> worker (instant answer)"] = sequential(url, count)
        out["gateway -> fake in process (again)"] = sequential(r.gateway("fake"), count)
    out["llama.cpp in process"] = in_process_llama(llama_count)
    with rig() as r:
        url = r.gateway("pool")
        r.worker(url, "llama")
        r.wait_workers(url, 1)
        out["gateway -> pool -> llama.cpp worker"] = sequential(url, llama_count)
    return out


def migration(rounds: int, heartbeat: float) -> list[float]:
    times = []
    with rig() as r:
        url = r.gateway("pool", heartbeat=heartbeat)
        r.worker(url, "backup", "--fake", "from backup", "--tokens-per-s", "10")
        token = None
        for _ in range(rounds):
            victim, token = r.worker(
                url,
                "victim",
                "--fake",
                "from victim",
                "--fake-delay",
                "60",
                "--tokens-per-s",
                "1000",
                token=token,
            )
            r.wait_workers(url, 2)
            box: list[Any] = []
            thread = threading.Thread(target=lambda b=box: b.append(call(url, "/v1/chat/completions", BODY)))
            thread.start()
            time.sleep(0.5)  # leased at once; killed while holding it
            victim.send_signal(signal.SIGKILL)
            killed = time.perf_counter()
            thread.join(60)
            times.append(time.perf_counter() - killed)
            assert box and box[0]["choices"][0]["message"]["content"] == "from backup", box
            victim.wait()
    return times


def throughput(workers: int, extra: list[str], seconds: float, clients: int = 8) -> float:
    with rig() as r:
        url = r.gateway("pool")
        for i in range(workers):
            r.worker(url, f"w{i}", *extra)
        r.wait_workers(url, workers)
        done = [0] * clients
        stop = time.perf_counter() + seconds

        def client(i: int) -> None:
            host, port = url.removeprefix("http://").split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=120)
            headers = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
            while time.perf_counter() < stop:
                conn.request("POST", "/v1/chat/completions", json.dumps(BODY), headers)
                answer = conn.getresponse()
                answer.read()
                done[i] += answer.status == 200

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(done) / (time.perf_counter() - began)


def matcher_quality(trials: int, seed: int = 7) -> dict[str, float]:
    from thrifty.pool.matcher import Need, WorkerView, choose, expected_seconds
    from thrifty.pool.protocol import Capabilities, ModelCapability

    rng = random.Random(seed)
    ratios: dict[str, list[float]] = {"matcher": [], "least loaded": [], "random": []}
    same = 0
    for _ in range(trials):
        true_views, shown = [], []
        for i in range(rng.randint(2, 6)):
            speed = rng.choice([5, 15, 40, 80, 200]) * rng.uniform(0.8, 1.2)
            n_ctx = rng.choice([1024, 2048, 8192])
            conc, load = rng.randint(1, 2), rng.randint(0, 3)
            model = "m" if rng.random() < 0.85 else "other"
            for views, s in ((true_views, speed), (shown, speed * rng.uniform(0.7, 1.3))):
                caps = Capabilities(models=(ModelCapability(model, n_ctx, s),), concurrency=conc)
                views.append(WorkerView(id=f"w{i}", name=f"w{i}", capabilities=caps, load=load))
        need = Need("m", prompt_tokens=rng.randint(10, 3000), max_tokens=rng.choice([32, 128, 512]))
        truth = {v.id: expected_seconds(v, need) for v in true_views}
        able = {k: t for k, t in truth.items() if t is not None}
        if not able:
            continue
        best = min(able.values())
        picked = choose(shown, need)
        assert picked is not None
        same += able[picked.id] == best
        ratios["matcher"].append(able[picked.id] / best)
        loads = {v.id: v.load for v in true_views if v.id in able}
        ratios["least loaded"].append(able[min(loads, key=lambda k: (loads[k], k))] / best)
        ratios["random"].append(able[rng.choice(sorted(able))] / best)
    out = {f"{k} mean": statistics.mean(v) for k, v in ratios.items()}
    out.update({f"{k} p95": sorted(v)[int(0.95 * len(v))] for k, v in ratios.items()})
    out["matcher picks the oracle's worker"] = same / len(ratios["matcher"])
    return out


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "docs/bench/pool.md"))
    args = parser.parse_args()
    n, n_llama, rounds, secs = (100, 10, 3, 3.0) if args.quick else (400, 30, 8, 8.0)
    load = os.getloadavg()[0]
    lines = [
        "## The device pool (issue 19)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"date {datetime.date.today()}; load average before the run {load:.2f}; command: "
        f"`.venv/bin/python benchmarks/pool.py{' --quick' if args.quick else ''}`. Everything (Redis, "
        "gateways, workers, clients) on this one machine over loopback.",
        "",
        "### Dispatch overhead (sequential requests, one keep-alive connection; ms)",
        "",
        "| path | p50 | p90 | p99 | n |",
        "|---|---|---|---|---|",
    ]
    lat = overhead(n, n_llama)
    for name, values in lat.items():
        lines.append(
            f"| {name} | {statistics.median(values):.2f} | {pct(values, 0.9):.2f} | {pct(values, 0.99):.2f} | {len(values)} |"
        )
    base = statistics.median(lat["gateway -> fake in process"] + lat["gateway -> fake in process (again)"])
    pool_cost = statistics.median(lat["gateway -> pool -> worker (instant answer)"]) - base
    llama_cost = statistics.median(lat["gateway -> pool -> llama.cpp worker"]) - statistics.median(
        lat["llama.cpp in process"]
    )
    lines += [
        "",
        f"The pool's own cost (instant answer, pool minus the in-process fake, p50): **{pool_cost:+.2f} ms**. "
        f"Gateway + pool + worker against llama.cpp in process (same model, max_tokens 8, p50): {llama_cost:+.2f} ms "
        "(this includes the client's HTTP hop to the gateway and the gateway itself).",
        "",
    ]
    print("\n".join(lines), flush=True)
    hb = 1.0
    moves = migration(rounds, hb)
    lines += [
        f"### Migration after SIGKILL (heartbeat {hb} s, grace 0.5 s; goal ≤ {hb + 1:.1f} s)",
        "",
        f"Kill to answer, {len(moves)} rounds: median {statistics.median(moves):.2f} s, max {max(moves):.2f} s "
        f"({', '.join(f'{m:.2f}' for m in moves)}).",
        "",
        "### Throughput (8 client threads, req/s)",
        "",
        "| workers | scripted 50 ms answer | SmolLM2 via llama.cpp (max_tokens 8) |",
        "|---|---|---|",
    ]
    for count in (1, 2, 3):
        scripted = throughput(count, ["--fake", "ok", "--fake-delay", "0.05", "--tokens-per-s", "100"], secs)
        real = throughput(count, [], secs)
        lines.append(f"| {count} | {scripted:.1f} | {real:.1f} |")
        print(lines[-1], flush=True)
    quality = matcher_quality(2000 if not args.quick else 500)
    lines += ["", "### Matcher against an oracle that knows the true speeds (completion time / best)", ""]
    lines += [f"- {k}: {v:.3f}" for k, v in quality.items()]
    lines.append(f"\nLoad average after the run: {os.getloadavg()[0]:.2f}.")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
