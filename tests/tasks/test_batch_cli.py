"""`thrifty batch run`: results, bad lines, refusals, resuming after SIGKILL, over HTTP."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from thrifty.errors import InvalidRequest, UpstreamConnectionError
from thrifty.fakeupstream import FakeUpstream
from thrifty.tasks.cli import batch_main
from thrifty.testing import FakeBackend
from thrifty.types import ChatRequest, message_text


def line(custom_id: str, text: str, model: str = "fake") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 5}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def echo(request: ChatRequest) -> str:
    return "echo " + message_text(request.messages[-1])


def write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def run(args: list[str], backend: Any) -> tuple[int, str]:
    err = io.StringIO()
    code = batch_main(["run", *args], backend=backend, progress=err)
    return code, err.getvalue()


def test_every_request_gets_a_result_line(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", [line(f"q{i}", f"question {i}") for i in range(20)])
    out = tmp_path / "out.jsonl"
    code, progress = run([src, "-o", str(out), "--concurrency", "4"], FakeBackend(echo))
    assert code == 0
    results = {r["custom_id"]: r for r in read(out)}
    assert len(results) == 20
    first = results["q7"]
    assert first["error"] is None
    assert first["response"]["status_code"] == 200
    assert first["response"]["body"]["choices"][0]["message"]["content"] == "echo question 7"
    assert first["response"]["body"]["usage"]["total_tokens"] > 0
    assert "20/20 done, 0 failed" in progress
    assert read(Path(f"{out}.errors.jsonl")) == []


def test_a_batch_longer_than_the_task_window_completes(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", [line(f"q{i}", f"n{i}") for i in range(700)])
    out = tmp_path / "out.jsonl"
    code, _ = run([src, "-o", str(out), "--concurrency", "8"], FakeBackend(echo))
    assert code == 0
    assert len({r["custom_id"] for r in read(out)}) == 700


def test_malformed_lines_are_reported_by_number_and_the_rest_runs(tmp_path: Path) -> None:
    lines = [
        line("a", "one"),
        "{not json",
        line("b", "two"),
        json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}),
        json.dumps({"custom_id": "c", "url": "/v1/embeddings", "body": {"model": "m", "input": "x"}}),
        json.dumps({"custom_id": "d", "url": "/v1/chat/completions", "body": {"model": "m"}}),
    ]
    src = write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    code, _ = run([src, "-o", str(out)], FakeBackend(echo))
    assert code == 1
    assert sorted(r["custom_id"] for r in read(out)) == ["a", "b"]
    errors = read(Path(f"{out}.errors.jsonl"))
    assert [e["error"]["line"] for e in errors] == [2, 4, 5, 6]
    assert errors[0]["error"]["code"] == "invalid_json"
    assert "line 5" in errors[2]["error"]["message"] and "/v1/embeddings" in errors[2]["error"]["message"]
    assert "messages" in errors[3]["error"]["message"]


def test_duplicate_custom_id_refuses_the_batch_before_anything_runs(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", [line("x", "1"), line("y", "2"), line("x", "3")])
    out = tmp_path / "out.jsonl"
    backend = FakeBackend(echo)
    code, _ = run([src, "-o", str(out)], backend)
    assert code == 2
    assert backend.requests == []
    assert not out.exists()


def test_duplicate_message_names_the_id_and_lines(tmp_path: Path, capsys: Any) -> None:
    src = write(tmp_path / "in.jsonl", [line("x", "1"), line("y", "2"), line("x", "3")])
    batch_main(["run", src, "-o", str(tmp_path / "o.jsonl")], backend=FakeBackend(echo))
    assert "duplicate custom_id 'x' on lines 1 and 3" in capsys.readouterr().err


def test_too_large_batch_is_refused_naming_the_limit(tmp_path: Path, capsys: Any) -> None:
    src = write(tmp_path / "in.jsonl", [line(f"q{i}", "hi") for i in range(6)])
    backend = FakeBackend(echo)
    code = batch_main(["run", src, "-o", str(tmp_path / "o.jsonl"), "--max-requests", "5"], backend=backend)
    assert code == 2 and backend.requests == []
    assert "limit (--max-requests = 5)" in capsys.readouterr().err


def test_failed_requests_go_to_the_error_file_with_the_upstream_error(tmp_path: Path) -> None:
    def answer(request: ChatRequest) -> str | BaseException:
        text = message_text(request.messages[-1])
        if text == "bad":
            return InvalidRequest("the model refused this", param="messages")
        if text == "flaky":
            return UpstreamConnectionError("connection reset")
        return "fine"

    src = write(tmp_path / "in.jsonl", [line("ok", "good"), line("no", "bad"), line("down", "flaky")])
    out = tmp_path / "out.jsonl"
    code, _ = run([src, "-o", str(out), "--retries", "0"], FakeBackend(answer))
    assert code == 1
    assert [r["custom_id"] for r in read(out)] == ["ok"]
    errors = {e["custom_id"]: e for e in read(Path(f"{out}.errors.jsonl"))}
    assert errors["no"]["response"]["status_code"] == 400
    assert errors["no"]["response"]["body"]["error"]["message"] == "the model refused this"
    assert errors["down"]["response"]["status_code"] == 502


def test_state_of_another_input_is_not_mixed_in(tmp_path: Path, capsys: Any) -> None:
    state = str(tmp_path / "job.db")
    first = write(tmp_path / "a.jsonl", [line("a", "1")])
    second = write(tmp_path / "b.jsonl", [line("b", "2")])
    assert (
        batch_main(
            ["run", first, "-o", str(tmp_path / "o.jsonl"), "--state", state, "-q"], backend=FakeBackend(echo)
        )
        == 0
    )
    code = batch_main(
        ["run", second, "-o", str(tmp_path / "o.jsonl"), "--state", state, "-q"], backend=FakeBackend(echo)
    )
    assert code == 2
    assert "belongs to another input" in capsys.readouterr().err


KILLABLE = """
import sys
from thrifty.tasks.cli import batch_main
from thrifty.testing import FakeBackend
sys.exit(batch_main(sys.argv[1:], backend=FakeBackend("slow answer", delay=0.05)))
"""


def test_a_killed_job_resumes_without_redoing_or_losing_results(tmp_path: Path) -> None:
    n = 60
    src = write(tmp_path / "in.jsonl", [line(f"q{i}", f"n{i}") for i in range(n)])
    out, state = tmp_path / "out.jsonl", tmp_path / "job.db"
    args = ["run", src, "-o", str(out), "--state", str(state), "--concurrency", "2", "-q"]
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, *args])
    try:
        finished = 0
        deadline = time.monotonic() + 30
        while finished < 10 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if state.exists():
                with sqlite3.connect(state) as db:
                    try:
                        finished = db.execute("SELECT COUNT(*) FROM requests WHERE state='ok'").fetchone()[0]
                    except sqlite3.OperationalError:
                        finished = 0
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert 10 <= finished < n

    backend = FakeBackend(echo)
    code, _ = run(args[1:], backend)
    assert code == 0
    redone = {message_text(r.messages[-1]) for r in backend.requests}
    results = read(out)
    assert sorted(r["custom_id"] for r in results) == sorted(f"q{i}" for i in range(n))
    assert len(redone) <= n - finished  # nothing that had finished ran again
    slow = [r for r in results if r["response"]["body"]["choices"][0]["message"]["content"] == "slow answer"]
    assert len(slow) >= finished  # the killed run's results were kept


async def test_runs_against_a_gateway_over_http(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", [line(f"q{i}", f"n{i}") for i in range(8)])
    out = tmp_path / "out.jsonl"
    async with FakeUpstream(text="from http") as upstream:
        upstream.configure(burst_429=2, retry_after=0)
        code = await asyncio.to_thread(batch_main, ["run", src, "-o", str(out), "--url", upstream.root, "-q"])
        assert upstream.stats.rate_limited == 2
    assert code == 0
    results = read(out)
    assert len(results) == 8
    assert all("from" in r["response"]["body"]["choices"][0]["message"]["content"] for r in results)


def test_needs_a_target(tmp_path: Path, capsys: Any) -> None:
    src = write(tmp_path / "in.jsonl", [line("a", "1")])
    assert batch_main(["run", src, "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "--url" in capsys.readouterr().err
