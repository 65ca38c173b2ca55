"""`thrifty bench`: a whole run on scripted backends, resuming after SIGKILL, refusals, the reports."""

from __future__ import annotations

import csv
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from thrifty.bench import runner
from thrifty.bench.cli import bench_main
from thrifty.bench.runner import RunSpec
from thrifty.bench.task import BenchTask
from thrifty.testing import FakeBackend
from thrifty.types import ChatRequest, message_text


def answers(n: int, seed: int = 7) -> dict[str, str]:
    """Prompt -> a known-good answer, for every task of a run."""
    return {t.prompt: runner.reference(t) for t in runner.plan(RunSpec(models=("x",), n=n, seed=seed))}


def oracle_and_dunce(n: int) -> FakeBackend:
    known = answers(n)

    def answer(request: ChatRequest) -> str:
        return known[message_text(request.messages[-1])] if request.model == "oracle" else "I am not sure."

    return FakeBackend(answer)


def run(args: list[str], backend: Any) -> tuple[int, str]:
    err = io.StringIO()
    code = bench_main(["run", *args], backend=backend, progress=err)
    return code, err.getvalue()


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_grades_every_task_and_writes_the_reports(tmp_path: Path) -> None:
    backend = oracle_and_dunce(2)
    args = [
        "--models",
        "oracle",
        "--routers",
        "dunce",
        "--n",
        "2",
        "--sweep",
        "1,4",
        "--sweep-n",
        "6",
        "-o",
        str(tmp_path),
    ]
    code, err = run([*args, "--price", "oracle=1,2", "--per-model", "1"], backend)
    assert code == 0, err
    rows = read(tmp_path / "results.csv")
    assert len(rows) == 2 * 20 * 2  # two models, 20 cells, n=2
    by_model = {m: [r["ok"] == "True" for r in rows if r["model"] == m] for m in ("oracle", "dunce")}
    assert all(by_model["oracle"]) and not any(by_model["dunce"])
    assert all(float(r["cost"]) > 0 for r in rows if r["model"] == "oracle")
    md = (tmp_path / "report.md").read_text()
    assert "dunce vs oracle" in md and "## Concurrency (oracle" in md
    assert (tmp_path / "report.png").exists()
    sent = len(backend.requests)
    assert sent == 80 + 2 * 6  # the matrix, then 6 tasks at each of 2 worker counts

    code, _ = run(args, backend)  # the same command again: everything is done, nothing is sent
    assert code == 0 and len(backend.requests) == sent


def test_another_plan_in_the_same_folder_is_refused(tmp_path: Path, capsys: Any) -> None:
    base = [
        "--models",
        "m",
        "--domains",
        "maze",
        "--types",
        "solving",
        "--n",
        "1",
        "--sweep",
        "",
        "-o",
        str(tmp_path),
    ]
    assert run(base, FakeBackend("x"))[0] == 0
    assert run([*base, "--seed", "8"], FakeBackend("x"))[0] == 2
    assert "belongs to another run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--domains", "chess"], "unknown domain 'chess'"),
        (["--types", "solving,dreaming"], "unknown task type 'dreaming'"),
        (["--n", "0"], "--n must be at least 1"),
        (["--price", "m=cheap"], "--price must look like"),
        (["--sweep", "1,two"], "--sweep must be"),
        (["--routers", "m"], "named twice"),
    ],
)
def test_bad_options_are_refused_naming_the_problem(
    tmp_path: Path, capsys: Any, extra: list[str], message: str
) -> None:
    assert run(["--models", "m", "-o", str(tmp_path), *extra], FakeBackend("x"))[0] == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "state.db").exists()


def test_missing_question_data_stops_the_run_before_it_starts(tmp_path: Path, capsys: Any) -> None:
    args = [
        "--models",
        "m",
        "--domains",
        "general",
        "--data",
        str(tmp_path / "none"),
        "-o",
        str(tmp_path / "o"),
    ]
    backend = FakeBackend("x")
    assert run(args, backend)[0] == 2
    err = capsys.readouterr().err
    assert "arc_challenge_test.csv" in err and "--types" in err
    assert not backend.started and not (tmp_path / "o").exists()


def test_failed_requests_are_failures_in_the_report(tmp_path: Path) -> None:
    from thrifty.errors import InvalidRequest

    def refuse(request: ChatRequest) -> Any:
        return InvalidRequest("no thanks")

    args = [
        "--models",
        "m",
        "--domains",
        "image",
        "--types",
        "analysis",
        "--n",
        "3",
        "--sweep",
        "",
        "-o",
        str(tmp_path),
    ]
    assert run(args, FakeBackend(refuse))[0] == 0
    rows = read(tmp_path / "results.csv")
    assert [r["ok"] for r in rows] == ["False"] * 3 and all("no thanks" in r["reason"] for r in rows)


def test_the_reports_can_be_written_again_from_the_state(tmp_path: Path) -> None:
    args = [
        "--models",
        "m",
        "--domains",
        "maze",
        "--types",
        "solving",
        "--n",
        "2",
        "--sweep",
        "1",
        "-o",
        str(tmp_path),
    ]
    assert run(args, FakeBackend("ANSWER: R"))[0] == 0
    (tmp_path / "report.md").unlink()
    assert bench_main(["report", str(tmp_path), "--no-plot"]) == 0
    assert "## Concurrency (m" in (tmp_path / "report.md").read_text()
    assert bench_main(["report", str(tmp_path / "nothing")]) == 2


def test_a_grader_that_breaks_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    from thrifty.bench import maze

    def broken(task: BenchTask, text: str) -> Any:
        raise KeyError("grid")

    monkeypatch.setattr(maze, "grade", broken)
    task = runner.generate("maze", "solving", 1, 7)[0]
    verdict = runner.grade(task, "ANSWER: R")
    assert not verdict.ok and "could not be graded" in verdict.reason


KILLABLE = """
import sys
from thrifty.bench.cli import bench_main
from thrifty.testing import FakeBackend
sys.exit(bench_main(sys.argv[1:], backend=FakeBackend("ANSWER: 3", delay=0.05)))
"""


def finished_ids(state: Path) -> set[str]:
    if not state.exists():
        return set()
    with sqlite3.connect(state) as db:
        try:
            rows = db.execute("SELECT custom_id FROM requests WHERE batch_id='matrix' AND state != 'pending'")
            return {r[0] for r in rows}
        except sqlite3.OperationalError:
            return set()


def test_a_killed_run_resumes_without_running_a_finished_task_again(tmp_path: Path) -> None:
    out, state = tmp_path / "out", tmp_path / "out" / "state.db"
    args = [
        "run",
        "--models",
        "a,b",
        "--n",
        "2",
        "--concurrency",
        "2",
        "--sweep",
        "",
        "--no-plot",
        "-q",
        "-o",
        str(out),
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, *args], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(finished_ids(state)) < 10 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    before = finished_ids(state)
    total = 2 * 20 * 2
    assert 10 <= len(before) < total

    tasks = runner.plan(RunSpec(models=("a",), n=2))
    prompts = {t.id: t.prompt for t in tasks}
    backend = FakeBackend("ANSWER: 4")
    code, _ = run(args[1:], backend)
    assert code == 0
    # some tasks share a prompt (their hidden checks differ), so compare (model, prompt) multisets
    plan = Counter((m, t.prompt) for m in ("a", "b") for t in tasks)
    done_before = Counter((cid.split("|")[0], prompts[cid.split("|")[1]]) for cid in before)
    redone = Counter((r.model, message_text(r.messages[-1])) for r in backend.requests)
    assert redone + done_before == plan  # each task ran once in all: nothing finished ran again
    rows = read(out / "results.csv")
    assert sorted(f"{r['model']}|{r['task']}" for r in rows) == sorted(
        f"{m}|{t.id}" for m in "ab" for t in tasks
    )


def test_the_ray_engine_gets_a_picklable_timed_backend_factory() -> None:
    import functools
    import pickle

    from thrifty.tasks.batch_job import JobSettings
    from thrifty.tasks.ray_engine import RayEngine

    engine = runner.ray_engine_for("ray://nowhere:1", functools.partial(FakeBackend, "hi"))(
        JobSettings(concurrency=3)
    )
    assert isinstance(engine, RayEngine)
    assert engine.address == "ray://nowhere:1" and engine.settings.concurrency == 3
    built = pickle.loads(pickle.dumps(engine.backend))()  # what a Ray worker does
    assert isinstance(built, runner.Timed) and isinstance(built.inner, FakeBackend)
