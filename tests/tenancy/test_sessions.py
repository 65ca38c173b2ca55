"""Dashboard sessions live in the tenancy database, so every process serving the same config
knows them: signed in through one process, the page reads its data from another, and signing
out anywhere ends the session everywhere (within SESSION_RECHECK_S)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.processes import serve, stop

ADMIN = "sk-admin-sessions"


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[list[str]]:
    """Two `thrifty serve` processes on one config and one data directory (one SQLite database)."""
    cfg = tmp_path / "thrifty.yaml"
    cfg.write_text(f"""
server: {{api_keys: [{ADMIN}], data_dir: {tmp_path}}}
models:
  - name: fake
    deployments:
      - {{provider: fake, model: m}}
""")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        urls = []
        for _ in range(2):
            proc, url = serve(cfg)
            procs.append(proc)
            urls.append(url)
        yield urls
    finally:
        for proc in procs:
            stop(proc)


def test_a_session_from_one_process_works_on_another_until_signed_out_anywhere(
    two_processes: list[str],
) -> None:
    a, b = two_processes
    with httpx.Client(follow_redirects=False, timeout=30) as http:
        login = http.post(a + "/dashboard/login", data={"key": ADMIN})
        assert login.status_code == 303 and login.headers["location"] == "../dashboard"
        cookie = {"cookie": "thrifty_session=" + login.cookies["thrifty_session"]}
        http.cookies.clear()  # each request below sends the cookie it names, nothing else
        assert http.get(b + "/dashboard/api/stats", headers=cookie).status_code == 200
        assert http.get(a + "/dashboard/api/stats", headers=cookie).status_code == 200
        wrong = {"cookie": "thrifty_session=not-a-session"}
        assert (
            http.get(b + "/dashboard/api/stats", headers=wrong).json()["error"]["code"] == "session_expired"
        )

        assert http.post(b + "/dashboard/logout", headers=cookie).status_code == 303
        assert http.get(b + "/dashboard/api/stats", headers=cookie).status_code == 401
        deadline = time.monotonic() + 30  # process a trusts its copy for a few seconds
        while http.get(a + "/dashboard/api/stats", headers=cookie).status_code != 401:
            assert time.monotonic() < deadline, "the session outlived its sign-out on the other process"
            time.sleep(0.2)
