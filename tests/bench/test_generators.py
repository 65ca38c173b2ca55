"""Generators: the same seed gives the same tasks, every task is solvable, missing data is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from thrifty.bench import general, runner
from thrifty.bench.general import BenchDataMissing
from thrifty.bench.runner import RunSpec
from thrifty.bench.task import DOMAINS, TYPES

CELLS = [(d, k) for d in DOMAINS for k in TYPES]


@pytest.mark.parametrize(("domain", "kind"), CELLS)
def test_a_seed_gives_the_same_tasks_and_another_seed_others(domain: str, kind: str) -> None:
    first = runner.generate(domain, kind, 12, seed=7)
    assert runner.generate(domain, kind, 12, seed=7) == first
    assert runner.generate(domain, kind, 12, seed=8) != first
    assert len({t.id for t in first}) == 12
    assert len({repr(t.expected) for t in first}) > 1


@pytest.mark.parametrize(("domain", "kind"), CELLS)
def test_every_generated_task_is_solvable(domain: str, kind: str) -> None:
    """The grader accepts the computed answer of every task (code answers are run in test_graders)."""
    for task in runner.generate(domain, kind, 40, seed=1):
        verdict = runner.grade(task, runner.reference(task))
        assert verdict.ok, (task.id, verdict.reason)


def test_a_cell_does_not_depend_on_what_else_is_planned() -> None:
    both = runner.plan(RunSpec(models=("m",), domains=("maze", "image"), types=("solving",), n=3))
    alone = runner.plan(RunSpec(models=("m",), domains=("image",), types=("solving",), n=3))
    assert [t for t in both if t.domain == "image"] == alone


def test_tasks_round_trip_through_json() -> None:
    for task in runner.plan(RunSpec(models=("m",), n=2)):
        assert type(task).from_json(task.to_json()) == task


def test_analysis_mazes_include_unsolvable_ones() -> None:
    lengths = [t.expected["length"] for t in runner.generate("maze", "analysis", 40, seed=7)]
    assert None in lengths and any(x is not None for x in lengths)


def test_missing_question_data_is_named_with_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(BenchDataMissing) as caught:
        general.generate("analysis", __import__("random").Random(1), 0, tmp_path)
    message = caught.value.message
    assert str(tmp_path / general.ARC_FILE) in message and "--types" in message
    # the other general types need no file
    assert general.generate("solving", __import__("random").Random(1), 0, tmp_path).expected["value"] > 0


def test_questions_are_read_from_the_data_and_unusable_rows_skipped(routing_data: Path) -> None:
    questions = general.arc_questions(routing_data)
    assert len(questions) == 8  # the row without options and the row not scored correct are skipped
    assert all(q.endswith("D) " + q.split("D) ")[-1]) and gold in "ABCD" for q, gold in questions)
    assert not any("Print only" in q for q, _ in questions)


def test_unknown_domain_or_type_is_refused() -> None:
    with pytest.raises(Exception, match="unknown domain"):
        runner.generate("chess", "solving", 1, 7)
    with pytest.raises(Exception, match="unknown task type"):
        runner.generate("maze", "dreaming", 1, 7)
