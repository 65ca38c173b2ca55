"""wrk (Debian package) as the load generator for the benchmarks: one POST body, keep-alive."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path


def run(
    url: str, connections: int, seconds: int, body: dict[str, object], key: str | None = None
) -> dict[str, float]:
    """p50/p99 latency (ms), requests/s and errors (non-2xx + socket errors) of one wrk run."""
    payload = json.dumps(body).replace("\\", "\\\\").replace('"', '\\"')
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"\n' if key else ""
    lua = Path(tempfile.mkdtemp()) / "post.lua"
    lua.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        + auth
        + f'wrk.body = "{payload}"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("P50 %d\\nP99 %d\\n", latency:percentile(50), latency:percentile(99)))\n'
        "end\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lua.unlink()
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n_err = int(non2xx.group(1)) if non2xx else 0
    if errors:
        n_err += sum(int(x) for x in errors.groups())
    p50, p99 = re.search(r"P50 (\d+)", out), re.search(r"P99 (\d+)", out)
    count = re.search(r"(\d+) requests in", out)
    assert found and p50 and p99 and count, out
    return {
        "p50_ms": int(p50.group(1)) / 1000,
        "p99_ms": int(p99.group(1)) / 1000,
        "rps": float(found.group(1)),
        "errors": n_err,
        "count": int(count.group(1)),
    }
