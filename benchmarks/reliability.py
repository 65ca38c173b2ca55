"""Is the front door safe to expose? Floods, shutdowns, a full disk, a soak, and what it costs.

Loopback only; every section is bounded and stops by itself. Sections (pick with flags, none
picked = all):

  --flood      10,000 idle connections + 50 slowloris clients while one client measures real
               requests (goal: all answered, p99 < 100 ms); also against the unguarded server
  --sigterm    SIGTERM under 50 concurrent requests, N runs: answered = ledger rows
  --disk-full  the data dir on a full 64 KB tmpfs (read-only dir if mounting is not allowed):
               does it serve, what does /ready say
  --soak       a steady request rate for --soak-minutes, gateway RSS sampled each minute
  --hot-path   requests/s through the guarded protocol vs plain uvicorn httptools (or a git
               ref's `thrifty serve` with --baseline-ref), alternating rounds, same run
  --fuzz       benchmarks/fuzz_routes.py in a subprocess (--fuzz-cases N, default 10,000):
               cases by status, 5xx causes (goal: 0 x 5xx in 10,000)

    .venv/bin/python benchmarks/reliability.py [--flood] [--sigterm] ... [--out docs/bench/reliability.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import signal
import sqlite3
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
CHAT = json.dumps(
    {"model": "fake", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 8}
).encode()

# The same gateway as `thrifty serve`, with the connection layer on or off: the hot-path
# comparison changes nothing else.
LAUNCHER = """
import sys, uvicorn
from thrifty.config import load_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.server.protocol import ConnectionLimits, guarded_protocol
cfg = load_config(sys.argv[1])
http = guarded_protocol(ConnectionLimits.from_server(cfg.server)) if sys.argv[3] == "guarded" else "httptools"
async def bare(scope, receive, send):  # no gateway: the protocol's own cost, magnified
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
    await send({"type": "http.response.body", "body": b'{"id":"ok"}'})
app = bare if sys.argv[4:] == ["bare"] else create_app(Gateway(cfg))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), http=http, loop="uvloop",
            log_level="warning", access_log=False, proxy_headers=False, server_header=False,
            lifespan="off" if app is bare else "on")
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def post_chat(addr: str) -> tuple[int, str]:
    req = urllib.request.Request(
        f"http://{addr}/v1/chat/completions", data=CHAT, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            if get(url, 2)[0] == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} not up after {timeout} s")


@contextlib.contextmanager
def process(
    cmd: list[str], env: dict[str, str] | None = None, fd_limit: int = 0
) -> Iterator[subprocess.Popen[bytes]]:
    def limit() -> None:
        if fd_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        preexec_fn=limit,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def upstream(*extra: str) -> Iterator[str]:
    port = free_port()
    with process([PY, "-m", "thrifty.fakeupstream", "--port", str(port), *extra]) as proc:
        wait_up(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}/v1"


def write_config(folder: Path, upstream_url: str, server: str = "") -> Path:
    cfg = folder / "thrifty.yaml"
    cfg.write_text(
        f"server: {{data_dir: {folder}{', ' + server if server else ''}}}\n"
        "model_list:\n"
        f'  - model_name: fake\n    litellm_params: {{model: openai/m, api_base: "{upstream_url}", api_key: sk-up}}\n'
    )
    return cfg


@contextlib.contextmanager
def gateway(
    cfg: Path, mode: str = "serve", fd_limit: int = 0, src: Path = ROOT / "src", bare: bool = False
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`thrifty serve` (mode "serve"), or the launcher with the protocol "guarded" / "plain"
    (``bare``: a trivial ASGI app instead of the gateway)."""
    port = free_port()
    env = {"PYTHONPATH": str(src)}
    if mode == "serve":
        cmd = [
            PY,
            "-m",
            "thrifty",
            "serve",
            "--config",
            str(cfg),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    else:
        cmd = [PY, "-c", LAUNCHER, str(cfg), str(port), mode, *(["bare"] if bare else [])]
    with process(cmd, env=env, fd_limit=fd_limit) as proc:
        wait_up(f"http://127.0.0.1:{port}/health", proc)
        yield f"127.0.0.1:{port}", proc


# -- a small raw HTTP/1.1 client: cheap enough that the gateway, not the client, is measured --


class Conn:
    def __init__(self, addr: str) -> None:
        self.host, port = addr.split(":")
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(CHAT)).encode() + b"\r\n\r\n" + CHAT
        )

    async def chat(self) -> tuple[int, bytes]:
        """One request on a keep-alive connection; reconnects once if the server closed it."""
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            try:
                self.writer.write(self.request)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (OSError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
                continue
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await self.reader.readexactly(length)
            if b"connection: close" in head.lower():
                self.close()
            return status, body
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- (a) flood -------------------------------------------------------------


async def flood_worker(addr: str, idle: int, slowloris: int, seconds: float, reconnect: float) -> None:
    """Runs in its own process (so its event loop does not delay the measuring client): holds
    ``idle`` silent connections and ``slowloris`` dribbling ones for ``seconds``, then prints
    counts as JSON. "ready" is printed once every idle connection has been opened once."""
    host, port = addr.split(":")
    stop = asyncio.Event()
    counts = {"idle_opened": 0, "idle_dropped": 0, "idle_connect_errors": 0, "slow_opened": 0}

    async def idle_client() -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                counts["idle_connect_errors"] += 1
                return
            counts["idle_opened"] += 1
            done, _ = await asyncio.wait(
                [asyncio.ensure_future(reader.read(1)), asyncio.ensure_future(stop.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )
            writer.close()
            if stop.is_set():
                return
            counts["idle_dropped"] += 1
            if not reconnect:
                await stop.wait()
                return
            await asyncio.sleep(reconnect)

    async def slow_client() -> None:
        while not stop.is_set():  # a header line a second, never finishing; reconnect when dropped
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
                counts["slow_opened"] += 1
                writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\n")
                while not stop.is_set() and not reader.at_eof():
                    writer.write(b"x-a: b\r\n")
                    await writer.drain()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(reader.read(1), 1.0)
                writer.close()
            except OSError:
                await asyncio.sleep(1.0)

    tasks = [asyncio.ensure_future(slow_client()) for _ in range(slowloris)]
    tasks += [asyncio.ensure_future(idle_client()) for _ in range(idle)]
    while counts["idle_opened"] + counts["idle_connect_errors"] < idle:
        await asyncio.sleep(0.1)
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait(tasks, timeout=15)
    print(json.dumps(counts), flush=True)


async def measure(addr: str, seconds: float, rate: float) -> dict[str, float]:
    """One keep-alive client at a steady rate (reconnecting when dropped)."""
    latencies: list[float] = []
    failures = sent = 0
    conn = Conn(addr)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        t = time.perf_counter()
        try:
            status, _ = await asyncio.wait_for(conn.chat(), 10)
            if status == 200:
                latencies.append((time.perf_counter() - t) * 1000)
            else:
                failures += 1
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            failures += 1
            conn.close()
        sent += 1
        await asyncio.sleep(max(0.0, sent / rate - (time.perf_counter() - started)))
    conn.close()
    return {
        "sent": sent,
        "answered": len(latencies),
        "failed": failures,
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "max": max(latencies, default=float("nan")),
    }


def flood_run(addr: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [
        PY,
        __file__,
        "--flood-worker",
        addr,
        "--idle",
        str(args.idle),
        "--slowloris",
        str(args.slowloris),
        "--flood-seconds",
        str(args.flood_seconds + 5),
        "--reconnect",
        str(args.reconnect),
    ]
    worker = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError("the flood worker failed")
        result = asyncio.run(measure(addr, args.flood_seconds, args.rate))
        out, _ = worker.communicate(timeout=120)
        return {**result, **json.loads(out.strip().splitlines()[-1])}
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def section_flood(args: argparse.Namespace) -> list[str]:
    churn = (
        f"each reopened {args.reconnect:g} s after the server drops it"
        if args.reconnect
        else "never reopened"
    )
    lines = [
        "## (a) Idle flood and slowloris",
        "",
        f"A separate process opens {args.idle} idle connections ({churn}) and {args.slowloris} slowloris "
        "clients (one header line a second, never finishing, reopened when dropped); once every idle "
        f"connection has been opened, one keep-alive client sends {args.rate:g} chat requests/s for "
        f"{args.flood_seconds:g} s. Gateway open-file limit {args.fd_limit} (soft = hard); server "
        "settings at their defaults (max_connections 2048, header_timeout 10 s, keepalive_timeout 5 s).",
        "",
        "| server | sent | answered | failed | p50 ms | p99 ms | max ms | idle opened | idle connect errors "
        "| idle dropped by server | slowloris connects |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp, upstream() as up:
        cfg = write_config(Path(tmp), up)
        for mode, label in (("plain", "uvicorn httptools (before)"), ("guarded", "guarded protocol (now)")):
            with gateway(cfg, mode, fd_limit=args.fd_limit) as (addr, _):
                r = flood_run(addr, args)
            print(label, r, file=sys.stderr, flush=True)
            lines.append(
                f"| {label} | {r['sent']:.0f} | {r['answered']:.0f} | {r['failed']:.0f} | {r['p50']:.1f} | "
                f"{r['p99']:.1f} | {r['max']:.1f} | {r['idle_opened']} | {r['idle_connect_errors']} | "
                f"{r['idle_dropped']} | {r['slow_opened']} |"
            )
    return lines + [""]


# -- (b) SIGTERM under load ------------------------------------------------


async def sigterm_load(addr: str, proc: subprocess.Popen[bytes], concurrency: int, after: int) -> list[str]:
    answered: list[str] = []
    term = asyncio.Event()

    async def worker() -> None:
        conn = Conn(addr)
        for _ in range(10_000):  # bounded
            try:
                status, body = await asyncio.wait_for(conn.chat(), 30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                if term.is_set():
                    break
                continue
            if status == 200:
                answered.append(json.loads(body)["id"])
            if len(answered) >= after and not term.is_set():
                term.set()
                proc.send_signal(signal.SIGTERM)
            if term.is_set() and status != 200:
                break
        conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answered


def section_sigterm(args: argparse.Namespace) -> list[str]:
    rows_out = []
    with upstream("--latency-ms", "20") as up:
        for run in range(args.sigterm_runs):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = write_config(Path(tmp), up)
                with gateway(cfg) as (addr, proc):
                    answered = asyncio.run(sigterm_load(addr, proc, 50, after=200))
                    code = proc.wait(60)
                db = sqlite3.connect(Path(tmp) / "ledger.db")
                rows = {r[0] for r in db.execute("SELECT request_id FROM requests WHERE status = 200")}
                total = db.execute("SELECT count(*) FROM requests").fetchone()[0]
                db.close()
                missing = len(set(answered) - rows)
                rows_out.append((run + 1, len(answered), len(rows), total, missing, code))
                print("sigterm run", rows_out[-1], file=sys.stderr, flush=True)
    lost = sum(r[4] for r in rows_out)
    lines = [
        "## (b) SIGTERM under 50 concurrent requests",
        "",
        f"{args.sigterm_runs} runs. Each: fresh data dir, `thrifty serve`, upstream latency 20 ms, 50 keep-alive "
        "clients; SIGTERM after 200 answers; clients stop at their first failure after it.",
        "",
        f"**Answered requests without a ledger row, all runs: {lost}.**",
        "",
        "| run | answered (200) | ledger rows status 200 | ledger rows all | answered without row | exit code |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e} | {f} |" for a, b, c, d, e, f in rows_out]
    return lines + [""]


# -- (c) disk full at startup ----------------------------------------------


def section_disk_full(args: argparse.Namespace) -> list[str]:
    lines = ["## (c) Startup on a full disk", ""]
    with tempfile.TemporaryDirectory() as tmp, upstream() as up:
        data = Path(tmp) / "data"
        data.mkdir()
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(data)], capture_output=True, text=True
            ).returncode
            == 0
        )
        try:
            if mounted:
                with contextlib.suppress(OSError), open(data / "filler", "wb") as f:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()
                how = "data dir on a 64 KB tmpfs filled to the last byte before start"
            else:
                data.chmod(0o555)
                how = "data dir read-only (mounting a tmpfs was not allowed)"
            cfg = Path(tmp) / "thrifty.yaml"
            cfg.write_text(
                write_config(Path(tmp), up).read_text().replace(f"data_dir: {tmp}", f"data_dir: {data}")
            )
            with gateway(cfg) as (addr, _):
                time.sleep(2)
                probes = [
                    ("GET /ready, 2 s after start", get(f"http://{addr}/ready")),
                    ("POST /v1/chat/completions", post_chat(addr)),
                    ("GET /ready, after that request", get(f"http://{addr}/ready")),
                ]
                if mounted:
                    (data / "filler").unlink()
                    # SQLite's WAL and shared-memory files alone take ~64 KB: give it room to recover
                    subprocess.run(["mount", "-o", "remount,size=4m", str(data)], check=True)
                    deadline = time.monotonic() + args.disk_wait
                    waited = time.monotonic()
                    while time.monotonic() < deadline and '"ready"' not in get(f"http://{addr}/ready")[1]:
                        post_chat(addr)  # traffic, as a real deployment would have
                        time.sleep(1.0)
                    freed = f"filler removed and tmpfs grown to 4 MB, then {time.monotonic() - waited:.0f} s (limit {args.disk_wait:g} s) of a request a second"
                    probes += [
                        (f"GET /ready, {freed}", get(f"http://{addr}/ready")),
                        ("POST /v1/chat/completions, after that", post_chat(addr)),
                    ]
        finally:
            if mounted:
                subprocess.run(["umount", str(data)], check=False)
    lines += [
        f"Setup: {how}; `thrifty serve` with a fake upstream.",
        "",
        "| probe | status | body (first 300 chars) |",
        "|---|---|---|",
        *(f"| {name} | {status} | `{body[:300]}` |" for name, (status, body) in probes),
        "",
    ]
    return lines


# -- (d) soak --------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def soak_load(
    addr: str, pid: int, minutes: float, rate: float
) -> tuple[list[tuple[float, float]], int, int, int, list[float]]:
    conns = [Conn(addr) for _ in range(8)]
    samples = [(0.0, rss_mb(pid))]
    latencies: list[float] = []
    ok = failed = skipped = 0
    started = time.perf_counter()
    sent = 0
    next_sample = 60.0
    in_flight: set[asyncio.Task[None]] = set()

    async def one(conn: Conn) -> None:
        nonlocal ok, failed
        t = time.perf_counter()
        try:
            status, _ = await asyncio.wait_for(conn.chat(), 30)
            ok += status == 200
            failed += status != 200
            latencies.append((time.perf_counter() - t) * 1000)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            failed += 1
            conn.close()
        finally:
            conns.append(conn)

    while (elapsed := time.perf_counter() - started) < minutes * 60:
        if elapsed >= next_sample:
            samples.append((elapsed / 60, rss_mb(pid)))
            next_sample += 60
        if conns:
            task = asyncio.ensure_future(one(conns.pop()))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        else:
            skipped += 1  # all 8 connections still waiting: the gateway fell behind the schedule
        sent += 1
        await asyncio.sleep(max(0.0, sent / rate - (time.perf_counter() - started)))
    await asyncio.wait(in_flight, timeout=30) if in_flight else None
    samples.append((minutes, rss_mb(pid)))
    return samples, ok, failed, skipped, latencies


def section_soak(args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp, upstream() as up:
        cfg = write_config(Path(tmp), up)
        with gateway(cfg) as (addr, proc):
            samples, ok, failed, skipped, lat = asyncio.run(
                soak_load(addr, proc.pid, args.soak_minutes, args.soak_rate)
            )
    first = samples[1] if len(samples) > 2 else samples[0]  # after a minute of warm-up when there is one
    growth = samples[-1][1] - first[1]
    lines = [
        "## (d) Soak",
        "",
        f"`thrifty serve` (default config, no cache section) at {args.soak_rate:g} chat requests/s for "
        f"{args.soak_minutes:g} minutes over 8 keep-alive connections; gateway RSS from /proc each minute.",
        "",
        f"Answered {ok}, failed {failed}, not sent because all 8 connections were still busy "
        f"(the gateway or the machine fell behind) {skipped}; latency p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms. "
        f"RSS growth from minute {first[0]:.0f} to the end: {growth:+.1f} MB.",
        "",
        "| minute | RSS MB |",
        "|---|---|",
    ]
    lines += [f"| {m:.1f} | {r:.1f} |" for m, r in samples]
    return lines + [""]


# -- (e) hot path ----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput(addr: str, seconds: float, connections: int, pid: int) -> tuple[float, float]:
    """Requests/s, and the server's CPU microseconds per request (steadier on a busy machine)."""
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        conn = Conn(addr)
        while time.perf_counter() < stop:
            status, _ = await conn.chat()
            done += status == 200
        conn.close()

    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return done / elapsed, (cpu_seconds(pid) - cpu) / max(done, 1) * 1e6


def compare(base: tuple[str, int], new: tuple[str, int], args: argparse.Namespace) -> dict[str, list[float]]:
    for addr, pid in (base, new):
        asyncio.run(throughput(addr, 2, args.connections, pid))  # warm up
    out: dict[str, list[float]] = {"base_rps": [], "new_rps": [], "base_cpu": [], "new_cpu": []}
    for _ in range(args.rounds):
        for key, (addr, pid) in (("base", base), ("new", new)):
            rps, cpu = asyncio.run(throughput(addr, args.round_seconds, args.connections, pid))
            out[f"{key}_rps"].append(rps)
            out[f"{key}_cpu"].append(cpu)
        print("hot path round", {k: round(v[-1]) for k, v in out.items()}, file=sys.stderr, flush=True)
    return out


def hot_path_rows(label: str, r: dict[str, list[float]]) -> list[str]:
    med = statistics.median
    rps_ratio = med([n / b for b, n in zip(r["base_rps"], r["new_rps"], strict=True)])
    cpu_ratio = med([n / b for b, n in zip(r["base_cpu"], r["new_cpu"], strict=True)])
    return [
        f"| {label} | before | {med(r['base_rps']):.0f} | {', '.join(f'{x:.0f}' for x in r['base_rps'])} "
        f"| {med(r['base_cpu']):.0f} | |",
        f"| {label} | now | {med(r['new_rps']):.0f} | {', '.join(f'{x:.0f}' for x in r['new_rps'])} "
        f"| {med(r['new_cpu']):.0f} | **req/s {rps_ratio:.3f}, CPU/request {cpu_ratio:.3f}** |",
    ]


class NullTransport(asyncio.Transport):
    """Enough of a socket for a protocol to serve requests in-process."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def protocol_cost(guarded: bool, n: int) -> float:
    """Microseconds per keep-alive request through one protocol instance, trivial app, no socket."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from thrifty.server.protocol import ConnectionLimits, guarded_protocol

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        await receive()  # type: ignore[operator]
        await send(
            {
                "type": "http.response.start",
                "status": 200,  # type: ignore[operator]
                "headers": [(b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]

    config = uvicorn.Config(
        app,
        proxy_headers=False,
        server_header=False,
        lifespan="off",
        access_log=False,  # type: ignore[arg-type]
        log_config=None,
    )
    cls = guarded_protocol(ConnectionLimits()) if guarded else HttpToolsProtocol
    proto = cls(config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop())
    proto.connection_made(NullTransport())
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 2\r\n\r\n{}"
    )
    started = time.process_time()  # this process's CPU time: other processes' load does not count
    for _ in range(n):
        proto.data_received(request)
        while not proto.cycle.response_complete:
            await asyncio.sleep(0)
    elapsed = time.process_time() - started
    proto.connection_lost(None)
    return elapsed / n * 1e6


def protocol_rows(args: argparse.Namespace) -> tuple[list[str], float]:
    import uvloop

    best = {False: float("inf"), True: float("inf")}
    for _ in range(args.micro_repeats):
        for guarded in (False, True):
            best[guarded] = min(best[guarded], uvloop.run(protocol_cost(guarded, args.micro_requests)))
    extra = best[True] - best[False]
    rows = [
        f"| uvicorn httptools | {best[False]:.2f} |",
        f"| guarded | {best[True]:.2f} |",
        f"| **added by the guard** | **{extra:.2f}** |",
    ]
    return rows, extra


def section_hot_path(args: argparse.Namespace) -> list[str]:
    micro, extra = protocol_rows(args)
    rows: list[str] = []
    gateway_cpu_samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        up = stack.enter_context(upstream())
        cfg = write_config(Path(tmp), up)
        if args.baseline_ref:
            base_src = Path(tmp) / "baseline"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_src), args.baseline_ref],
                check=True,
                capture_output=True,
            )
            stack.callback(
                subprocess.run,
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_src)],
                check=False,
                capture_output=True,
            )
            before, now = f"`thrifty serve` at `{args.baseline_ref}`", "`thrifty serve` of this tree"
            base_addr, base_proc = stack.enter_context(gateway(cfg, "serve", src=base_src / "src"))
            new_addr, new_proc = stack.enter_context(gateway(cfg, "serve"))
            result = compare((base_addr, base_proc.pid), (new_addr, new_proc.pid), args)
            rows += hot_path_rows("gateway", result)
            gateway_cpu_samples += result["base_cpu"]
        else:
            before, now = "uvicorn's httptools protocol", "the guarded protocol (same launcher otherwise)"
            for bare, label in ((False, "gateway"), (True, "bare ASGI app")):
                with (
                    gateway(cfg, "plain", bare=bare) as (base_addr, base_proc),
                    gateway(cfg, "guarded", bare=bare) as (new_addr, new_proc),
                ):
                    result = compare((base_addr, base_proc.pid), (new_addr, new_proc.pid), args)
                rows += hot_path_rows(label, result)
                if not bare:
                    gateway_cpu_samples += result["base_cpu"]
    gateway_cpu = statistics.median(gateway_cpu_samples) if gateway_cpu_samples else float("nan")
    return [
        "## (e) Hot-path cost of the connection checks",
        "",
        "### In-process: the protocol alone",
        "",
        f"One protocol instance, a null transport, a trivial app: {args.micro_requests} keep-alive POSTs "
        f"per try, {args.micro_repeats} alternating tries, the fastest try of each by process CPU time "
        "(the machine's noise only ever adds time). µs per request, parsing, the ASGI task and timers included:",
        "",
        "| protocol | µs/request |",
        "|---|---|",
        *micro,
        "",
        f"Against the gateway's own cost per request (median server CPU {gateway_cpu:.0f} µs in the live "
        f"runs below, before), the guard adds **{extra / gateway_cpu * 100:.1f}%**: the expected loss of "
        f"requests/s is {extra / gateway_cpu * 100:.1f}% (goal ≤ 3%).",
        "",
        "### Live: the gateway over loopback",
        "",
        f"POST /v1/chat/completions (non-streamed), {args.connections} keep-alive connections from one "
        f"asyncio client, {args.rounds} alternating rounds of {args.round_seconds:g} s; before and now "
        f'run side by side, loaded one at a time. Before: {before}; now: {now}. "bare ASGI app" '
        "swaps the gateway for a trivial app. CPU/request is the server process's user+system CPU time "
        "over the round divided by requests answered. Ratios are medians of the per-round ratios "
        "now/before. On a machine shared with other work these swing by tens of percent from round to "
        "round (see the per-round column); the in-process figure above is the one to trust.",
        "",
        "| app | server | median req/s | per round | CPU µs/request | now/before |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]


# -- (f) fuzz hook ---------------------------------------------------------


def section_fuzz(args: argparse.Namespace) -> list[str]:
    """benchmarks/fuzz_routes.py in a subprocess; its totals by status and its failure counts."""
    script = ROOT / "benchmarks" / "fuzz_routes.py"
    lines = ["## (f) Fuzz", ""]
    if not script.exists():
        return lines + [f"Skipped: `{script.relative_to(ROOT)}` does not exist in this tree.", ""]
    cmd = [PY, str(script), "--cases", str(args.fuzz_cases), "--seed", str(args.fuzz_seed)]
    started = time.perf_counter()
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=args.fuzz_timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    seconds = time.perf_counter() - started
    if args.fuzz_log:
        Path(args.fuzz_log).write_text(done.stdout + done.stderr[-20_000:])
    return lines + [
        f"`{' '.join([str(script.relative_to(ROOT)), *cmd[2:]])}` exited {done.returncode} after {seconds:.0f} s "
        "(1 = some 5xx, unnamed 4xx or answer off the document). Its summary (the per-route tables "
        "and any failing request are in its own output):",
        "",
        "```",
        *fuzz_summary(done.stdout),
        "```",
        "",
    ]


def fuzz_summary(output: str) -> list[str]:
    """The lines of a fuzz_routes.py run that carry its totals and failures: no per-route rows."""
    keep = (
        "machine:",
        "operations,",
        "## ",
        "| status",
        "|---|---|",
        "5xx causes",
        "4xx without",
        "answers (",
    )
    keep += ("- ", "  routes:", "  minimal body:", "  shortest request:")
    kept = []
    for line in output.splitlines():
        line = line.rstrip()
        if line.startswith("|---|---|-"):  # a per-route table's rule, not the status table's
            continue
        counts = " cases in " in line or " operations, " in line
        if line.startswith(keep) or re.fullmatch(r"\| \d{3} \| \d+ \|", line) or counts:
            kept.append(line[:400])
    return kept


SECTIONS = {
    "flood": section_flood,
    "sigterm": section_sigterm,
    "disk_full": section_disk_full,
    "soak": section_soak,
    "hot_path": section_hot_path,
    "fuzz": section_fuzz,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in SECTIONS:
        p.add_argument(f"--{name.replace('_', '-')}", action="store_true")
    p.add_argument("--idle", type=int, default=10_000)
    p.add_argument("--slowloris", type=int, default=50)
    p.add_argument("--rate", type=float, default=50.0, help="flood: real requests per second")
    p.add_argument("--flood-seconds", type=float, default=30.0)
    p.add_argument("--fd-limit", type=int, default=4096, help="flood: the gateway's open-file limit")
    p.add_argument(
        "--reconnect", type=float, default=0.0, help="flood: reopen a dropped idle connection after this"
    )
    p.add_argument("--flood-worker", help=argparse.SUPPRESS)
    p.add_argument("--sigterm-runs", type=int, default=20)
    p.add_argument(
        "--disk-wait", type=float, default=60.0, help="disk-full: wait for /ready after freeing space"
    )
    p.add_argument("--soak-minutes", type=float, default=10.0)
    p.add_argument("--soak-rate", type=float, default=100.0)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--round-seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--micro-requests", type=int, default=5_000)
    p.add_argument("--micro-repeats", type=int, default=21)
    p.add_argument("--baseline-ref", help="hot path: compare with `thrifty serve` at this git ref")
    p.add_argument("--fuzz-cases", type=int, default=10_000, help="fuzz: about this many schemathesis cases")
    p.add_argument("--fuzz-seed", type=int, default=1)
    p.add_argument("--fuzz-timeout", type=float, default=1800)
    p.add_argument("--fuzz-log", help="fuzz: keep the fuzzer's whole output (per-route tables) here")
    p.add_argument("--out", help="write the markdown here (default: print it)")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))  # this tree's thrifty, as the servers it starts use
    if args.flood_worker:
        resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
        asyncio.run(
            flood_worker(args.flood_worker, args.idle, args.slowloris, args.flood_seconds, args.reconnect)
        )
        return 0
    chosen = [name for name in SECTIONS if getattr(args, name)] or list(SECTIONS)
    lines = [
        "# Reliability benchmark (issue 11)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other work), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
        f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.",
        f"Command: `.venv/bin/python benchmarks/reliability.py {' '.join(sys.argv[1:])}`.",
        "Everything on loopback: load generator, gateway and `thrifty.fakeupstream` share the cores.",
        "",
    ]
    for name in chosen:
        started = time.perf_counter()
        lines += SECTIONS[name](args)
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    text = "\n".join(lines)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
