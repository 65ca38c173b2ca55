"""Requests/s of `thrifty serve` from this tree against another git ref, same run, same upstream.

Both gateways sit in front of one fake upstream (answers at once) and are loaded by wrk in
alternating rounds (A B, B A, ...), so drift on a shared machine hits both alike; the result is
the median requests/s of each and their ratio.

    .venv/bin/python benchmarks/hotpath_ab.py --base main [--connections 10] [--seconds 6] [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "fake", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 8}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str) -> None:
    for _ in range(600):
        try:
            req = urllib.request.Request(
                url, data=json.dumps(BODY).encode(), headers={"content-type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def export(ref: str, into: Path) -> Path:
    """The ``src`` folder of ``ref``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True
    ).stdout
    path = into / "archive.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def wrk(url: str, lua: Path, connections: int, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(out)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found is not None, out
    return float(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="git ref to compare against (e.g. main)")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="thrifty-ab-"))
    trees = {"base": export(args.base, work), "this": ROOT / "src"}
    lua = work / "post.lua"
    lua.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{json.dumps(BODY)}'\n"
    )
    up = free_port()
    env = {**os.environ, "PYTHONPATH": str(trees["this"])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "thrifty.fakeupstream", "--port", str(up)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
    ]
    urls: dict[str, str] = {}
    try:
        for name, src in trees.items():
            folder = work / name
            folder.mkdir()
            (folder / "t.yaml").write_text(
                f"server: {{data_dir: {folder}}}\nmodels:\n  - name: fake\n    deployments: "
                f"[{{model: openai_compatible/fake, api_base: 'http://127.0.0.1:{up}/v1'}}]\n"
            )
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "thrifty",
                        "serve",
                        "--config",
                        str(folder / "t.yaml"),
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                    ],
                    env={**os.environ, "PYTHONPATH": str(src)},
                    stderr=subprocess.DEVNULL,
                )
            )
            urls[name] = f"http://127.0.0.1:{port}/v1/chat/completions"
        for url in urls.values():
            wait_ready(url)
            wrk(url, lua, args.connections, 2)  # warm up
        rps: dict[str, list[float]] = {name: [] for name in urls}
        for i in range(args.rounds):
            for name in list(urls) if i % 2 == 0 else list(reversed(urls)):
                rps[name].append(wrk(urls[name], lua, args.connections, args.seconds))
        medians = {name: statistics.median(values) for name, values in rps.items()}
        print(f"wrk -t1 -c{args.connections} -d{args.seconds}s x {args.rounds} rounds, alternating")
        for name, values in rps.items():
            print(f"{name:5} median {medians[name]:8.0f} req/s  runs {', '.join(f'{v:.0f}' for v in values)}")
        print(f"ratio this/base = {medians['this'] / medians['base']:.3f}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
