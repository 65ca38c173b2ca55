"""What thrifty adds on the way to a model, against calling it directly and against LiteLLM.

Runs, in one go on this machine:
  * a fake OpenAI-compatible upstream that answers at once (and ones that stream 5 and 100
    content chunks and a usage chunk),
  * thrifty serve in front of it; the floor, a featureless aiohttp + uvloop proxy that only
    forwards bytes (benchmarks/bare_proxy.py); and LiteLLM's proxy (installed into
    benchmarks/.venv-litellm by this script, never a thrifty dependency), each in front of the
    same kind of upstream,
  * wrk (Debian package) as the load generator, at 1, 10 and 50 connections,
and prints/writes markdown tables: p50/p99 latency, requests (streams)/s, errors, added latency
over direct, ratios to the bare proxy; for streams also chunks/s, time to first byte (a
one-connection probe of its own), the proxy's CPU µs per stream and per chunk, resident memory
after the run and per 1,000 open idle streams; plus `thrifty --help` / `import thrifty` wall
time and time from `thrifty serve` to the first answered request.

    .venv/bin/python benchmarks/gateway_overhead.py [--seconds 8] [--no-litellm] [--no-stream]
        [--rounds 1] [--idle 1000] [--out docs/bench/gateway.md]

With --rounds N every cell is measured N times, targets interleaved, and the median kept.
"""

from __future__ import annotations

import argparse
import asyncio
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
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
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
    return run_wrk(url, connections, seconds, body, key=MASTER_KEY)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _post(url: str, body: dict[str, object]) -> tuple[str, int, bytes]:
    rest = url.split("://", 1)[1]
    hostport, path = rest.split("/", 1)
    host, port = hostport.split(":")
    data = json.dumps(body).encode()
    head = (
        f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {MASTER_KEY}\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return host, int(port), head.encode() + data


async def _ttfb(url: str, body: dict[str, object], n: int) -> list[float]:
    """Seconds from sending a stream request to its first event's bytes, on one keep-alive connection."""
    host, port, request = _post(url, body)
    reader, writer = await asyncio.open_connection(host, port)
    samples = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            writer.write(request)
            seen, first = b"", None
            while not seen.endswith(b"0\r\n\r\n"):
                data = await reader.read(65536)
                if not data:
                    raise RuntimeError("the server closed the connection mid-stream")
                seen += data
                if first is None and b"data:" in seen:
                    first = time.perf_counter() - started
            samples.append(first if first is not None else float("nan"))
    finally:
        writer.close()
    return samples


def ttfb(url: str, body: dict[str, object], n: int = 300) -> dict[str, float]:
    samples = sorted(asyncio.run(_ttfb(url, body, n))[n // 10 :])  # the first tenth warms up
    return {
        "ttfb_p50_ms": statistics.median(samples) * 1000,
        "ttfb_p99_ms": samples[int(len(samples) * 0.99) - 1] * 1000,
    }


async def _hold(url: str, body: dict[str, object], n: int, pid: int) -> tuple[float, int]:
    """Open ``n`` streams that stay open (the upstream pauses after its first chunk); RSS while open."""
    host, port, request = _post(url, body)

    async def one() -> tuple[asyncio.StreamWriter, bool]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        seen = b""
        try:
            while b"data:" not in seen:
                data = await asyncio.wait_for(reader.read(65536), 30)
                if not data:
                    return writer, False
                seen += data
        except TimeoutError:
            return writer, False
        return writer, True

    opened = await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.sleep(1.0)
    rss = rss_mb(pid)
    for writer, _ in opened:
        writer.close()
    await asyncio.sleep(1.0)
    return rss, sum(ok for _, ok in opened)


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
    name: str,
    chunks: int,
    thrifty: str,
    litellm: Path | None,
    startup: dict[str, float] | None,
    upstream_args: tuple[str, ...] = (),
) -> Iterator[tuple[str, int]]:
    """A fresh fake upstream, and the proxy under test in front of it; yields the URL to load
    and the process id serving it."""
    up_port = free_port()
    up_cmd = [
        PY,
        "-m",
        "thrifty.fakeupstream",
        "--port",
        str(up_port),
        "--chunks",
        str(chunks),
        *upstream_args,
    ]
    with process(up_cmd) as up:
        upstream = f"http://127.0.0.1:{up_port}/v1"
        if not upstream_args:
            wait_ready(upstream + "/chat/completions")
        else:
            time.sleep(2.0)  # a holding upstream would hold the readiness probe too
        if name == "direct":
            yield upstream + "/chat/completions", up.pid
            return
        folder = Path(tempfile.mkdtemp())
        entry = f"model_list:\n  - model_name: fake\n    litellm_params: {{model: openai/fake, api_base: {upstream}, api_key: sk-up}}\n"
        port = free_port()
        if name == "bare":
            cmd = [
                PY,
                str(ROOT / "benchmarks" / "bare_proxy.py"),
                "--port",
                str(port),
                "--upstream",
                upstream[:-3],
            ]
            url, env, wait = f"http://127.0.0.1:{port}/v1/chat/completions", None, 60.0
        elif name == "thrifty":
            (folder / "thrifty.yaml").write_text(f"server: {{data_dir: {folder}}}\n" + entry)
            cmd = [
                thrifty,
                "serve",
                "--config",
                str(folder / "thrifty.yaml"),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
            url, env, wait = f"http://127.0.0.1:{port}/v1/chat/completions", None, 60.0
        else:
            assert litellm is not None
            (folder / "litellm.yaml").write_text(entry)
            cmd = [
                str(litellm),
                "--config",
                str(folder / "litellm.yaml"),
                "--port",
                str(port),
                "--num_workers",
                "1",
            ]
            env = {
                "LITELLM_LOG": "ERROR",
                "LITELLM_MASTER_KEY": MASTER_KEY,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            }
            url, wait = f"http://127.0.0.1:{port}/chat/completions", 180.0
        t0 = time.perf_counter()
        with process(cmd, env=env) as proc:
            if not upstream_args:
                wait_ready(url, timeout=wait)
            else:
                time.sleep(3.0 if name != "litellm" else 30.0)
            if startup is not None and name == "thrifty":
                startup["thrifty serve -> first answer (fake upstream)"] = (time.perf_counter() - t0) * 1000
            yield url, proc.pid


def timed(cmd: list[str], runs: int = 15) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


Results = dict[str, dict[int, dict[str, float]]]


def measure(
    args: argparse.Namespace, names: list[str], thrifty: str, litellm: Path | None, startup: dict[str, float]
) -> tuple[Results, dict[str, dict[str, float]]]:
    """Every target at 1, 10 and 50 connections, rounds interleaved; medians per cell."""
    samples: dict[str, dict[int, list[dict[str, float]]]] = {}
    extras: dict[str, list[dict[str, float]]] = {}  # per stream target: TTFB, RSS after the run
    modes = ((False, 1),) if args.no_stream else ((False, 1), (True, 5), (True, 100))
    for round_ in range(args.rounds):
        for stream, chunks in modes:
            body = {**BODY, "stream": stream}
            for name in names:
                # Each target gets its own fresh upstream process, so no target's idle pooled
                # connections sit through another target's load (the aiohttp-based fake upstream
                # was seen to stall an idle keep-alive connection after a 50-connection burst).
                first = round_ == 0 and not stream
                with target(name, chunks, thrifty, litellm, startup if first else None) as (url, pid):
                    key = f"{name}{f' (stream {chunks} chunks)' if stream else ''}"
                    wrk(url, 1, 2, body)  # warm up
                    # Time to first byte first: the aiohttp-based fake upstream can stall a
                    # keep-alive connection opened after a 50-connection burst.
                    extra = ttfb(url, body) if stream else {}
                    for conns in (1, 10, 50):
                        cpu = cpu_seconds(pid)
                        r = wrk(url, conns, args.seconds, body)
                        r["cpu_us"] = (cpu_seconds(pid) - cpu) / max(r["count"], 1) * 1e6
                        samples.setdefault(key, {}).setdefault(conns, []).append(r)
                        print(key, conns, r, file=sys.stderr, flush=True)
                    if stream:
                        extra["rss_mb"] = rss_mb(pid)
                        extras.setdefault(key, []).append(extra)
                        print(key, extra, file=sys.stderr, flush=True)
    results = {
        key: {
            conns: {m: statistics.median(r[m] for r in runs) for m in runs[0]}
            for conns, runs in by_conn.items()
        }
        for key, by_conn in samples.items()
    }
    extra_results = {
        key: {m: statistics.median(r[m] for r in runs) for m in runs[0]} for key, runs in extras.items()
    }

    return results, extra_results


def idle_memory(
    args: argparse.Namespace, names: list[str], thrifty: str, litellm: Path | None
) -> dict[str, tuple[float, float, int]]:
    """Each proxy's RSS idle and with ``args.idle`` streams open that the upstream holds."""
    idle: dict[str, tuple[float, float, int]] = {}
    if args.idle:
        # Streams that stay open: the upstream sends one chunk, then nothing for ten minutes.
        body = {**BODY, "stream": True}
        hold = ("--chunk-delay-ms", "600000")
        for name in names[1:]:
            with target(name, 2, thrifty, litellm, None, hold) as (url, pid):
                before = rss_mb(pid)
                during, opened = asyncio.run(_hold(url, body, args.idle, pid))
                idle[name] = (before, during, opened)
                print("idle", name, idle[name], file=sys.stderr, flush=True)

    return idle


def plain_table(results: Results) -> list[str]:
    lines: list[str] = []
    lines += [
        "| target | conns | p50 ms | p99 ms | req/s | errors | added p50 ms vs direct | req/s vs bare | p99 vs bare "
        "| proxy CPU µs/req | bare's CPU / this |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, by_conn in results.items():
        if "stream" in key:
            continue
        for conns, r in by_conn.items():
            added = r["p50_ms"] - results["direct"][conns]["p50_ms"]
            bare = results["bare"][conns]
            lines.append(
                f"| {key} | {conns} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps']:.0f} | {int(r['errors'])} "
                f"| {added:+.2f} | {r['rps'] / bare['rps']:.2f} | {r['p99_ms'] / max(bare['p99_ms'], 1e-3):.2f} "
                f"| {_cpu(key, r)} | {_cpu_ratio(key, r, bare)} |"
            )
    return lines


def _cpu(key: str, r: dict[str, float]) -> str:
    return "" if key.startswith("direct") else f"{r['cpu_us']:.0f}"


def _cpu_ratio(key: str, r: dict[str, float], bare: dict[str, float]) -> str:
    """The bare proxy's CPU per request over this proxy's: the throughput ratio a CPU-bound run would give."""
    return "" if key.startswith("direct") else f"{bare['cpu_us'] / r['cpu_us']:.2f}"


def stream_tables(
    results: Results, extra_results: dict[str, dict[str, float]], names: list[str]
) -> list[str]:
    lines: list[str] = []
    lines += [
        "",
        "Streams (each stream: the content chunks, a finish chunk, a usage chunk, `[DONE]`):",
        "",
        "| target | chunks | conns | p50 ms | p99 ms | streams/s | chunks/s | errors | streams/s vs bare "
        "| p99 vs bare | proxy CPU µs/stream | bare's CPU / this |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, by_conn in results.items():
        if "stream" not in key:
            continue
        chunks = int(key.split("stream ")[1].split()[0])
        suffix = f" (stream {chunks} chunks)"
        for conns, r in by_conn.items():
            bare = results["bare" + suffix][conns]
            lines.append(
                f"| {key.split(' (')[0]} | {chunks} | {conns} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {r['rps']:.0f} | {r['rps'] * chunks:.0f} | {int(r['errors'])} | {r['rps'] / bare['rps']:.2f} "
                f"| {r['p99_ms'] / max(bare['p99_ms'], 1e-3):.2f} | {_cpu(key, r)} | {_cpu_ratio(key, r, bare)} |"
            )
    lines += [
        "",
        "| target | chunks | time to first byte p50 ms | p99 ms | TTFB p50 over bare ms | over direct ms "
        "| RSS after the run MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, e in extra_results.items():
        chunks = int(key.split("stream ")[1].split()[0])
        suffix = f" (stream {chunks} chunks)"
        over_bare = e["ttfb_p50_ms"] - extra_results["bare" + suffix]["ttfb_p50_ms"]
        over_direct = e["ttfb_p50_ms"] - extra_results["direct" + suffix]["ttfb_p50_ms"]
        lines.append(
            f"| {key.split(' (')[0]} | {chunks} | {e['ttfb_p50_ms']:.3f} | {e['ttfb_p99_ms']:.3f} "
            f"| {over_bare:+.3f} | {over_direct:+.3f} | {e['rss_mb']:.0f} |"
        )
    lines += [
        "",
        "| proxy | CPU µs per chunk (100-chunk minus 5-chunk streams, per extra chunk, median over conns) |",
        "|---|---|",
    ]
    for name in names[1:]:
        per = [
            (
                results[f"{name} (stream 100 chunks)"][c]["cpu_us"]
                - results[f"{name} (stream 5 chunks)"][c]["cpu_us"]
            )
            / 95
            for c in (1, 10, 50)
        ]
        lines.append(f"| {name} | {statistics.median(per):.1f} |")
    return lines


def idle_table(idle: dict[str, tuple[float, float, int]], count: int) -> list[str]:
    lines: list[str] = []
    lines += [
        "",
        f"| proxy | RSS idle MB | RSS with {count} open idle streams MB | streams open | MB per 1,000 open streams |",
        "|---|---|---|---|---|",
    ]
    for name, (before, during, opened) in idle.items():
        per = (during - before) / max(opened, 1) * 1000
        lines.append(f"| {name} | {before:.0f} | {during:.0f} | {opened} | {per:.1f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-stream", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--idle", type=int, default=1000, help="open idle streams for the memory check (0: skip)"
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench" / "gateway.md"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is required: apt-get install -y wrk", file=sys.stderr)
        return 2
    thrifty = str(Path(PY).parent / "thrifty")
    lines = [
        "## Gateway overhead (issues 2, 12 and 21)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"date {datetime.date.today()}; load average before the run {os.getloadavg()[0]:.2f}; command: "
        f"`.venv/bin/python benchmarks/gateway_overhead.py {' '.join(sys.argv[1:])}`.",
        "Load: wrk, 1 thread, keep-alive, each cell a separate run of the stated seconds; upstream: "
        "`thrifty.fakeupstream` answering at once; everything on this one 2-core machine (load "
        "generator, gateway and upstream share the cores).",
        "",
    ]

    startup: dict[str, float] = {}
    litellm = None if args.no_litellm else ensure_litellm()
    names = ["direct", "bare", "thrifty"] + (["litellm"] if litellm else [])
    results, extra_results = measure(args, names, thrifty, litellm, startup)
    idle = idle_memory(args, names, thrifty, litellm) if not args.no_stream else {}
    lines += plain_table(results)
    if not args.no_stream:
        lines += stream_tables(results, extra_results, names)
    if idle:
        lines += idle_table(idle, args.idle)
    if "litellm" in results:
        ratio = max(r["rps"] for r in results["thrifty"].values()) / max(
            r["rps"] for r in results["litellm"].values()
        )
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
