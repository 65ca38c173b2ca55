"""What thrifty adds on the way to a model, against calling it directly and against LiteLLM.

Runs, in one go on this machine:
  * a fake OpenAI-compatible upstream that answers at once (and one that streams 100 chunks),
  * thrifty serve in front of it; the floor, a featureless aiohttp + uvloop proxy that only
    forwards bytes (benchmarks/bare_proxy.py); and LiteLLM's proxy (installed into
    benchmarks/.venv-litellm by this script, never a thrifty dependency), each in front of the
    same kind of upstream,
  * wrk (Debian package) as the load generator, at 1, 10 and 50 connections,
and prints/writes a markdown table: p50/p99 latency, requests/s, errors, added latency over
direct; plus `thrifty --help` / `import thrifty` wall time and time from `thrifty serve` to the
first answered request.

    .venv/bin/python benchmarks/gateway_overhead.py [--seconds 8] [--no-litellm] [--no-stream]
        [--rounds 1] [--out docs/bench/gateway.md]

With --rounds N every cell is measured N times, targets interleaved, and the median kept.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
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

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
LITELLM_VENV = ROOT / "benchmarks" / ".venv-litellm"
MASTER_KEY = "sk-bench-master-key-1234567890abcdef"  # LiteLLM refuses short or missing keys
BODY = {"model": "fake", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 8}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 120.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            headers = {"content-type": "application/json", "authorization": f"Bearer {MASTER_KEY}"}
            req = urllib.request.Request(url, data=json.dumps(BODY).encode(), headers=headers)
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def process(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk(url: str, connections: int, seconds: int, body: dict[str, object]) -> dict[str, float]:
    payload = json.dumps(body).replace("\\", "\\\\").replace('"', '\\"')
    lua = Path(tempfile.mkdtemp()) / "post.lua"
    lua.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {MASTER_KEY}"\n'
        f'wrk.body = "{payload}"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("P50 %d\\nP99 %d\\n", latency:percentile(50), latency:percentile(99)))\n'
        "end\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(lua), url],
        capture_output=True, text=True, check=True,
    ).stdout
    lua.unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n_err = int(non2xx.group(1)) if non2xx else 0
    if errors:
        n_err += sum(int(x) for x in errors.groups())
    return {
        "p50_ms": int(re.search(r"P50 (\d+)", out).group(1)) / 1000,  # type: ignore[union-attr]
        "p99_ms": int(re.search(r"P99 (\d+)", out).group(1)) / 1000,  # type: ignore[union-attr]
        "rps": rps,
        "errors": n_err,
    }


def ensure_litellm() -> Path | None:
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print("installing litellm[proxy] into", LITELLM_VENV, file=sys.stderr)
    subprocess.run([PY, "-m", "venv", str(LITELLM_VENV)], check=True)
    done = subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"])
    return exe if done.returncode == 0 and exe.exists() else None


@contextlib.contextmanager
def target(
    name: str, chunks: int, thrifty: str, litellm: Path | None, startup: dict[str, float] | None
) -> Iterator[str]:
    """A fresh fake upstream, and the proxy under test in front of it; yields the URL to load."""
    up_port = free_port()
    with process([PY, "-m", "thrifty.fakeupstream", "--port", str(up_port), "--chunks", str(chunks)]):
        upstream = f"http://127.0.0.1:{up_port}/v1"
        wait_ready(upstream + "/chat/completions")
        if name == "direct":
            yield upstream + "/chat/completions"
            return
        folder = Path(tempfile.mkdtemp())
        entry = f"model_list:\n  - model_name: fake\n    litellm_params: {{model: openai/fake, api_base: {upstream}, api_key: sk-up}}\n"
        port = free_port()
        if name == "bare":
            cmd = [PY, str(ROOT / "benchmarks" / "bare_proxy.py"), "--port", str(port), "--upstream", upstream[:-3]]
            url, env, wait = f"http://127.0.0.1:{port}/v1/chat/completions", None, 60.0
        elif name == "thrifty":
            (folder / "thrifty.yaml").write_text(f"server: {{data_dir: {folder}}}\n" + entry)
            cmd = [thrifty, "serve", "--config", str(folder / "thrifty.yaml"), "--port", str(port), "--log-level", "warning"]
            url, env, wait = f"http://127.0.0.1:{port}/v1/chat/completions", None, 60.0
        else:
            assert litellm is not None
            (folder / "litellm.yaml").write_text(entry)
            cmd = [str(litellm), "--config", str(folder / "litellm.yaml"), "--port", str(port), "--num_workers", "1"]
            env = {"LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
            url, wait = f"http://127.0.0.1:{port}/chat/completions", 180.0
        t0 = time.perf_counter()
        with process(cmd, env=env):
            wait_ready(url, timeout=wait)
            if startup is not None and name == "thrifty":
                startup["thrifty serve -> first answer (fake upstream)"] = (time.perf_counter() - t0) * 1000
            yield url


def timed(cmd: list[str], runs: int = 15) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-stream", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench" / "gateway.md"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is required: apt-get install -y wrk", file=sys.stderr)
        return 2
    thrifty = str(Path(PY).parent / "thrifty")
    lines = [
        "## Gateway overhead (issue 2)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"date {datetime.date.today()}; load average before the run {os.getloadavg()[0]:.2f}; command: "
        f"`.venv/bin/python benchmarks/gateway_overhead.py {' '.join(sys.argv[1:])}`.",
        "Load: wrk, 1 thread, keep-alive, each cell a separate run of the stated seconds; upstream: "
        "`thrifty.fakeupstream` answering at once; everything on this one 2-core machine (load "
        "generator, gateway and upstream share the cores).",
        "",
    ]

    samples: dict[str, dict[int, list[dict[str, float]]]] = {}
    startup: dict[str, float] = {}
    litellm = None if args.no_litellm else ensure_litellm()
    names = ["direct", "bare", "thrifty"] + (["litellm"] if litellm else [])
    modes = ((False, 1),) if args.no_stream else ((False, 1), (True, 100))
    for round_ in range(args.rounds):
        for stream, chunks in modes:
            body = {**BODY, "stream": stream}
            for name in names:
                # Each target gets its own fresh upstream process, so no target's idle pooled
                # connections sit through another target's load (the aiohttp-based fake upstream
                # was seen to stall an idle keep-alive connection after a 50-connection burst).
                first = round_ == 0 and not stream
                with target(name, chunks, thrifty, litellm, startup if first else None) as url:
                    key = f"{name}{' (stream 100 chunks)' if stream else ''}"
                    wrk(url, 1, 2, body)  # warm up
                    for conns in (1, 10, 50):
                        r = wrk(url, conns, args.seconds, body)
                        samples.setdefault(key, {}).setdefault(conns, []).append(r)
                        print(key, conns, r, file=sys.stderr, flush=True)
    results = {
        key: {conns: {m: statistics.median(r[m] for r in runs) for m in runs[0]} for conns, runs in by_conn.items()}
        for key, by_conn in samples.items()
    }

    lines += [
        "| target | conns | p50 ms | p99 ms | req/s | errors | added p50 ms vs direct | req/s vs bare | p99 vs bare |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, by_conn in results.items():
        suffix = " (stream 100 chunks)" if "stream" in key else ""
        for conns, r in by_conn.items():
            added = r["p50_ms"] - results["direct" + suffix][conns]["p50_ms"]
            bare = results["bare" + suffix][conns]
            lines.append(
                f"| {key} | {conns} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps']:.0f} | {int(r['errors'])} "
                f"| {added:+.2f} | {r['rps'] / bare['rps']:.2f} | {r['p99_ms'] / max(bare['p99_ms'], 1e-3):.2f} |"
            )
    if "litellm" in results:
        ratio = max(r["rps"] for r in results["thrifty"].values()) / max(r["rps"] for r in results["litellm"].values())
        lines += ["", f"Best throughput ratio thrifty / LiteLLM proxy (non-streaming): **{ratio:.1f}×**."]
    startup["thrifty --help (median of 15)"] = timed([thrifty, "--help"])
    startup["python -c 'import thrifty' (median of 15)"] = timed([PY, "-c", "import thrifty"])
    startup["python -c 'pass' (baseline, median of 15)"] = timed([PY, "-c", "pass"])
    lines += ["", "| startup | ms |", "|---|---|"] + [f"| {k} | {v:.0f} |" for k, v in startup.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
