"""Every grader on known-good, known-bad and malformed answers: a wrong answer fails, nothing crashes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from thrifty.agent.sandbox import Sandbox
from thrifty.bench import general, image, maze, quantum, runner, sorting
from thrifty.bench.task import DOMAINS, TYPES, BenchTask, final_answer, first_number, integers

MALFORMED = [
    "",
    "   \n\n",
    "I don't know.",
    "ANSWER:",
    "ANSWER: ANSWER: ???",
    "```\n```",
    "\x00\x01 \ufffd" * 50,
    "9" * 5000,
    "-" * 10_000,
    "ANSWER: NaN inf -inf",
    "#" * 3000,
    "def sort_list(",
    "H 99\nCNOT 0 0",
]


@pytest.fixture
async def box() -> AsyncIterator[Sandbox]:
    sandbox = Sandbox(workers=1)
    try:
        yield sandbox
    finally:
        await sandbox.aclose()


def cells() -> list[tuple[str, str]]:
    return [(d, k) for d in DOMAINS for k in TYPES]


@pytest.mark.parametrize(("domain", "kind"), cells())
async def test_a_known_good_answer_passes_and_malformed_ones_fail(
    domain: str, kind: str, box: Sandbox
) -> None:
    for task in runner.generate(domain, kind, 4, seed=11):
        good = await runner.grade_answer(task, runner.reference(task), box)
        assert good.ok, (task.id, good.reason)
        wrapped = f"Let me think step by step.\nSome working here.\n{runner.reference(task)}"
        assert (await runner.grade_answer(task, wrapped, box)).ok, task.id
        for text in MALFORMED:
            verdict = await runner.grade_answer(task, text, box)
            assert not verdict.ok, (task.id, text[:20])
            assert verdict.reason


def one(domain: str, kind: str, index: int = 0, seed: int = 3) -> BenchTask:
    return runner.generate(domain, kind, index + 1, seed)[index]


# -- maze --------------------------------------------------------------------------------


GRID = ["S.#", "..#", "#.E"]


def maze_task(kind: str, **expected: object) -> BenchTask:
    return BenchTask("maze/x/0", "maze", kind, "", {"grid": GRID, **expected})


def test_maze_paths_are_walked() -> None:
    task = maze_task("solving")
    assert maze.grade(task, "ANSWER: R D D R").ok
    assert maze.grade(task, "ANSWER: right, down, down, right").ok
    assert maze.grade(task, "DRDR").ok  # any path that gets there
    assert "wall" in maze.grade(task, "ANSWER: R R").reason
    assert "leaves" in maze.grade(task, "ANSWER: U").reason
    assert "does not end on E" in maze.grade(task, "ANSWER: R D").reason
    assert "no moves" in maze.grade(task, "ANSWER: go to the exit").reason


def test_maze_analysis_wants_the_shortest_length_or_no() -> None:
    assert maze.grade(maze_task("analysis", length=4), "ANSWER: 4").ok
    assert not maze.grade(maze_task("analysis", length=4), "ANSWER: 5").ok
    assert not maze.grade(maze_task("analysis", length=4), "ANSWER: NO").ok
    assert maze.grade(maze_task("analysis", length=None), "ANSWER: No, it is unreachable").ok
    assert not maze.grade(maze_task("analysis", length=None), "ANSWER: 4").ok
    assert not maze.grade(maze_task("analysis", length=None), "ANSWER: no, 4 moves").ok


def test_maze_optimisation_needs_a_valid_shorter_path() -> None:
    task = maze_task("optimisation", given="RLRDDR")
    assert maze.grade(task, "ANSWER: RDDR").ok
    assert "not fewer" in maze.grade(task, "ANSWER: RLRDDR").reason
    assert not maze.grade(task, "ANSWER: RRDD").ok  # shorter but through a wall


def test_maze_generation_checks_size_corners_walls_and_reachability() -> None:
    task = BenchTask("maze/generation/0", "maze", "generation", "", {"rows": 3, "cols": 3, "walls": 2})
    assert maze.grade(task, "ANSWER:\nS.#\n#..\n#.E").ok
    assert maze.grade(task, "ANSWER:\nS . #\n# . .\n# . E").ok  # spaced cells
    assert "not 3x3" in maze.grade(task, "ANSWER:\nS.#.\n#...\n#..E").reason
    assert "cannot be reached" in maze.grade(task, "ANSWER:\nS.#\n###\n#.E").reason
    assert "walls" in maze.grade(task, "ANSWER:\nS..\n...\n..E").reason
    assert "top-left" in maze.grade(task, "ANSWER:\n.S#\n#..\n#.E").reason


# -- sorting -----------------------------------------------------------------------------


def test_sorting_wants_exactly_the_sorted_list() -> None:
    task = BenchTask("sorting/solving/0", "sorting", "solving", "", {"list": [-3, 1, 1, 5]})
    assert sorting.grade(task, "ANSWER: [-3, 1, 1, 5]").ok
    assert sorting.grade(task, "ANSWER: -3 1 1 5").ok
    assert not sorting.grade(task, "ANSWER: [-3, 1, 5]").ok  # a duplicate lost
    assert not sorting.grade(task, "ANSWER: [5, 1, 1, -3]").ok


def test_sorting_bug_line_and_swaps() -> None:
    bug = one("sorting", "analysis", 1)
    assert "line" in bug.expected
    assert sorting.grade(bug, f"ANSWER: {bug.expected['line']}").ok
    assert not sorting.grade(bug, f"ANSWER: {bug.expected['line'] % 9 + 1}").ok
    swaps = BenchTask("sorting/optimisation/0", "sorting", "optimisation", "", {"swaps": 3})
    assert sorting.grade(swaps, "It takes 3 swaps. ANSWER: 3").ok
    assert not sorting.grade(swaps, "ANSWER: 2").ok
    assert sorting.inversions([3, 2, 1]) == 3
    assert sorting.bubble_pass([3, 1, 2]) == [1, 2, 3]


CASES = {"cases": [[3, 1, 2], [], [5, -1, 5]]}


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("def sort_list(xs):\n    return xs", "returned"),
        ("def sort_list(xs):\n    return sorted(xs, reverse=True)", "returned"),
        ("def sort_list(xs):\n    return xs[len(xs)]", "raised"),
        ("def sort_list(xs)\n    return xs", "does not run"),
        ("import os\ndef sort_list(xs):\n    os._exit(3)", "died"),
    ],
)
async def test_sort_functions_that_are_wrong_or_crash_fail(code: str, why: str, box: Sandbox) -> None:
    task = BenchTask("sorting/generation/0", "sorting", "generation", "", CASES)
    verdict = await sorting.grade_code(task, f"```python\n{code}\n```", box)
    assert not verdict.ok
    assert why in verdict.reason


async def test_a_correct_hand_written_sort_passes(box: Sandbox) -> None:
    code = (
        "def sort_list(xs):\n    out = []\n    for x in xs:\n        i = 0\n"
        "        while i < len(out) and out[i] <= x:\n            i += 1\n        out.insert(i, x)\n    return out"
    )
    task = BenchTask("sorting/generation/0", "sorting", "generation", "", CASES)
    assert (await sorting.grade_code(task, f"Here:\n```python\n{code}\n```\nDone.", box)).ok


async def test_a_sort_that_loops_or_eats_memory_is_stopped(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = BenchTask("sorting/generation/0", "sorting", "generation", "", CASES)
    monkeypatch.setattr(sorting, "CODE_TIMEOUT_S", 60.0)  # room for a worker to boot on a loaded machine
    hog = await sorting.grade_code(task, "```python\ndef sort_list(xs):\n    return [0] * 10**10\n```", box)
    assert not hog.ok and "memory" in hog.reason
    monkeypatch.setattr(sorting, "CODE_TIMEOUT_S", 1.0)
    loops = await sorting.grade_code(task, "```python\ndef sort_list(xs):\n    while True: pass\n```", box)
    assert not loops.ok and "longer than" in loops.reason
    monkeypatch.setattr(sorting, "CODE_TIMEOUT_S", 60.0)
    assert (await sorting.grade_code(task, runner.reference(task), box)).ok  # a fresh worker after both


# -- quantum -----------------------------------------------------------------------------


def test_the_simulator_knows_textbook_states() -> None:
    bell = quantum.probabilities(2, [("H", (0,), 0.0), ("CNOT", (0, 1), 0.0)])
    assert bell == pytest.approx({"00": 0.5, "01": 0.0, "10": 0.0, "11": 0.5})
    flipped = quantum.probabilities(3, [("X", (2,), 0.0)])
    assert flipped["001"] == pytest.approx(1.0)  # qubit 0 is the leftmost bit
    assert quantum.probabilities(1, [("RY", (0,), 60.0)])["1"] == pytest.approx(0.25)
    assert quantum.grover_curve(2, 1, 3)[1] == pytest.approx(1.0)  # N=4: one iteration finds it
    assert quantum.qft_phase(2, 1, 1) == pytest.approx(90.0)
    assert quantum.z_expectation(180, "none") == pytest.approx(-1.0)


def test_quantum_answers_in_other_number_forms() -> None:
    task = BenchTask("quantum/solving/0", "quantum", "solving", "", {"p": 0.25})
    assert quantum.grade(task, "ANSWER: 0.25").ok
    assert quantum.grade(task, "ANSWER: 25%").ok
    assert quantum.grade(task, "ANSWER: 1/4").ok
    assert not quantum.grade(task, "ANSWER: 0.5").ok
    phase = BenchTask("quantum/analysis/1", "quantum", "analysis", "", {"degrees": 0.0})
    assert quantum.grade(phase, "ANSWER: 360").ok  # modulo 360
    assert not quantum.grade(phase, "ANSWER: 90").ok


def test_circuits_with_bad_gates_fail_with_the_reason() -> None:
    task = BenchTask("quantum/generation/0", "quantum", "generation", "", {"n": 2, "target": {"11": 1.0}})
    assert quantum.grade(task, "ANSWER:\nX 0\nX 1").ok
    assert quantum.grade(task, "ANSWER:\nX q0\nCX 0, 1").ok
    assert "does not exist" in quantum.grade(task, "ANSWER:\nX 0\nX 2").reason
    assert "two different" in quantum.grade(task, "ANSWER:\nX 0\nCNOT 1 1").reason
    assert "differ" in quantum.grade(task, "ANSWER:\nH 0\nX 1").reason
    assert "more than" in quantum.grade(task, "\n".join(["X 0"] * 40)).reason


# -- image and general -------------------------------------------------------------------


def test_image_digits_counts_and_rectangles() -> None:
    task = BenchTask("image/solving/0", "image", "solving", "", {"digit": 7})
    assert image.grade(task, "ANSWER: seven").ok
    assert image.grade(task, "ANSWER: 7").ok
    assert not image.grade(task, "ANSWER: 1").ok
    rect = BenchTask("image/generation/0", "image", "generation", "", {"rows": 3, "cols": 4, "r": 2, "c": 2})
    assert image.grade(rect, "ANSWER:\n....\n.##.\n.##.").ok
    assert "not one filled" in image.grade(rect, "ANSWER:\n....\n.##.\n.#..").reason
    assert "2x3" in image.grade(rect, "ANSWER:\n....\n.###\n.###").reason
    assert image.mirror_flips(["#..#", "#...", "...."]) == 1


def test_general_reads_the_last_number_and_the_first_letter() -> None:
    task = BenchTask("general/solving/0", "general", "solving", "", {"value": 12})
    assert general.grade(task, "3 boxes of 4 is 12").ok
    assert not general.grade(task, "ANSWER: 12 - 1 = 11").ok
    mc = BenchTask("general/analysis/0", "general", "analysis", "", {"letter": "B"})
    assert general.grade(mc, "ANSWER: B) to collect water").ok
    assert not general.grade(mc, "ANSWER: A").ok
    assert not general.grade(mc, "A) to capture sunlight\n\nThe correct answer is D) to shade").ok
    assert general.grade(mc, "A is tempting, but the answer is (B).").ok
    sentence = BenchTask("general/generation/0", "general", "generation", "", {"words": 5, "start": "Rain"})
    assert general.grade(sentence, "ANSWER: Rain falls on the hills.").ok
    assert not general.grade(sentence, "ANSWER: Rain falls on hills.").ok
    assert not general.grade(sentence, "ANSWER: The rain falls on hills.").ok
    assert general.cheapest(7, 3, 5, 12) == 18


def test_an_answer_that_repeats_the_question_fails_whatever_it_contains() -> None:
    task = runner.generate("maze", "analysis", 1, 7)[0]
    echo = "Sure. " + task.prompt.split("End your reply")[0]  # it says "If not, answer NO", no digits
    assert runner.grade(task, echo).reason == "the answer repeats the question"
    assert runner.grade(task, runner.reference(task)).ok


def test_answer_reading_rules() -> None:
    assert final_answer("work... answer: 5\nANSWER: 6") == "6"
    assert final_answer("just 5") == "just 5"
    assert integers("1,000 and -3") == [1000, -3]
    assert first_number("about 3/4 or so") == 0.75
    assert first_number("nothing") is None
