"""Maze tasks: small grid mazes written as text, checked by walking them.

A maze is rows of ``#`` (wall) and ``.`` (open) with one ``S`` (start) and one
``E`` (end); moves are ``U``, ``D``, ``L``, ``R`` (up is the row above).

Grading, per task type (the reply is read with :func:`~.task.final_answer`):

- **solving** (give a path from S to E): the moves are the letters U/D/L/R
  (or the words up/down/left/right) of the answer; the path passes if
  walking it from S never leaves the grid or enters a wall and ends on E.
- **analysis** (is E reachable; if so, the shortest path's length): for a
  solvable maze the first integer must equal the BFS shortest length; for an
  unsolvable one the answer must say no (``no``, ``none``, ``unreachable``,
  ``impossible``, ``not``) and give no number.
- **optimisation** (shorten a given valid path that has detours): the answer
  must be a valid path as above with fewer moves than the given one.
- **generation** (draw an h×w maze with S top-left, E bottom-right, at least
  k walls, E reachable): the longest block of lines made of ``#.SE`` must be
  exactly h lines of w cells, with S and E in those corners, at least k
  walls, and a path from S to E.

Anything unreadable (no moves, no grid, wrong size) is a failure with the
reason, never an exception.
"""

from __future__ import annotations

import random
import re
from collections import deque

from .task import (
    ANSWER_RULE,
    CORRECT,
    BenchTask,
    Grade,
    fail,
    final_answer,
    first_integer,
    grid_lines,
    task_id,
)

DOMAIN = "maze"
MOVES = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}
OPPOSITE = {"U": "D", "D": "U", "L": "R", "R": "L"}
Cell = tuple[int, int]


def find(grid: list[str], mark: str) -> Cell | None:
    for r, row in enumerate(grid):
        c = row.find(mark)
        if c >= 0:
            return r, c
    return None


def open_cell(grid: list[str], cell: Cell) -> bool:
    r, c = cell
    return 0 <= r < len(grid) and 0 <= c < len(grid[r]) and grid[r][c] != "#"


def shortest_path(grid: list[str]) -> str | None:
    """The moves of one shortest path from S to E (breadth-first), or None."""
    start, end = find(grid, "S"), find(grid, "E")
    if start is None or end is None:
        return None
    came: dict[Cell, tuple[Cell, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == end:
            moves = []
            step = came[cell]
            while step is not None:
                cell, move = step
                moves.append(move)
                step = came[cell]
            return "".join(reversed(moves))
        for move, (dr, dc) in MOVES.items():
            nxt = (cell[0] + dr, cell[1] + dc)
            if nxt not in came and open_cell(grid, nxt):
                came[nxt] = (cell, move)
                queue.append(nxt)
    return None


def walk(grid: list[str], moves: str) -> str | None:
    """None when ``moves`` lead from S to E through open cells; else why not."""
    cell = find(grid, "S")
    if cell is None:
        return "the maze has no S"
    for i, move in enumerate(moves):
        dr, dc = MOVES[move]
        cell = (cell[0] + dr, cell[1] + dc)
        if not open_cell(grid, cell):
            return f"move {i + 1} ({move}) hits a wall or leaves the grid"
    return None if cell == find(grid, "E") else "the path does not end on E"


def read_moves(text: str) -> str:
    """The moves in an answer: words up/down/left/right, else the longest run of U/D/L/R letters."""
    answer = final_answer(text).upper()
    words = re.findall(r"\b(UP|DOWN|LEFT|RIGHT)\b", answer)
    if words:
        return "".join(w[0] for w in words)
    runs = re.findall(r"\b[UDLR]+\b(?:[\s,;>\-]+\b[UDLR]+\b)*", answer)
    return max((re.sub(r"[^UDLR]", "", r) for r in runs), key=len, default="")


def random_maze(rng: random.Random, rows: int, cols: int, density: float) -> list[str]:
    cells = [["#" if rng.random() < density else "." for _ in range(cols)] for _ in range(rows)]
    free = [(r, c) for r in range(rows) for c in range(cols)]
    (sr, sc), (er, ec) = rng.sample(free, 2)
    cells[sr][sc], cells[er][ec] = "S", "E"
    return ["".join(row) for row in cells]


def maze_where(rng: random.Random, solvable: bool, min_length: int = 3) -> tuple[list[str], str | None]:
    """A random maze that is (or is not) solvable, with its shortest path."""
    while True:
        size = rng.randint(5, 7)
        grid = random_maze(rng, size, size, rng.uniform(0.2, 0.4))
        path = shortest_path(grid)
        if solvable and path is not None and len(path) >= min_length:
            return grid, path
        if not solvable and path is None:
            return grid, None


def with_detours(grid: list[str], path: str, rng: random.Random, count: int) -> str:
    """``path`` with ``count`` back-and-forth steps inserted where the grid allows them."""
    for _ in range(count):
        for _try in range(20):
            at = rng.randint(0, len(path))
            cell = find(grid, "S")
            assert cell is not None
            for move in path[:at]:
                cell = (cell[0] + MOVES[move][0], cell[1] + MOVES[move][1])
            move = rng.choice("UDLR")
            if open_cell(grid, (cell[0] + MOVES[move][0], cell[1] + MOVES[move][1])):
                path = path[:at] + move + OPPOSITE[move] + path[at:]
                break
    return path


def _show(grid: list[str]) -> str:
    return "\n".join(grid)


LEGEND = "In this maze # is a wall, . is open, S is the start and E is the end. Moves are U, D, L, R."


def generate(kind: str, rng: random.Random, index: int) -> BenchTask:
    tid = task_id(DOMAIN, kind, index)
    if kind == "solving":
        grid, _ = maze_where(rng, True)
        prompt = f"{LEGEND}\n{_show(grid)}\nGive a sequence of moves from S to E. {ANSWER_RULE}"
        return BenchTask(tid, DOMAIN, kind, prompt, {"grid": grid})
    if kind == "analysis":
        grid, path = maze_where(rng, rng.random() < 0.6)
        prompt = (
            f"{LEGEND}\n{_show(grid)}\nCan E be reached from S? If not, answer NO. If yes, answer the "
            f"number of moves in the shortest path. {ANSWER_RULE}"
        )
        return BenchTask(
            tid, DOMAIN, kind, prompt, {"grid": grid, "length": None if path is None else len(path)}
        )
    if kind == "optimisation":
        grid, path = maze_where(rng, True)
        assert path is not None
        long = with_detours(grid, path, rng, rng.randint(2, 3))
        prompt = (
            f"{LEGEND}\n{_show(grid)}\nThis path from S to E is valid but has detours: {long}\n"
            f"Give a valid path from S to E with fewer moves. {ANSWER_RULE}"
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"grid": grid, "given": long})
    if kind == "generation":
        rows, cols, walls = rng.randint(4, 5), rng.randint(4, 5), rng.randint(3, 5)
        prompt = (
            f"Draw a maze of {rows} rows and {cols} columns using # for walls and . for open cells. Put S "
            f"in the top-left corner and E in the bottom-right corner. Use at least {walls} walls, and "
            f"make sure E can be reached from S by moving up, down, left and right. {ANSWER_RULE} Then "
            "the maze, one row per line."
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"rows": rows, "cols": cols, "walls": walls})
    raise ValueError(f"unknown task type {kind!r}")


def grade(task: BenchTask, text: str) -> Grade:
    exp = task.expected
    if task.type == "solving":
        moves = read_moves(text)
        if not moves:
            return fail("no moves in the answer")
        why = walk(exp["grid"], moves)
        return CORRECT if why is None else fail(why)
    if task.type == "analysis":
        answer = final_answer(text)
        number = first_integer(answer)
        if exp["length"] is None:
            said_no = re.search(r"\b(no|none|unreachable|impossible|not)\b", answer, re.IGNORECASE)
            return (
                CORRECT if said_no and number is None else fail("E is unreachable; the answer did not say so")
            )
        if number is None:
            return fail("no number in the answer")
        return CORRECT if number == exp["length"] else fail(f"answered {number}, shortest is {exp['length']}")
    if task.type == "optimisation":
        moves = read_moves(text)
        if not moves:
            return fail("no moves in the answer")
        why = walk(exp["grid"], moves)
        if why is not None:
            return fail(why)
        given = len(exp["given"])
        return CORRECT if len(moves) < given else fail(f"{len(moves)} moves is not fewer than {given}")
    if task.type == "generation":
        return _grade_drawn(exp, text)
    return fail(f"unknown task type {task.type!r}")


def reference(task: BenchTask) -> str:
    """A known-good answer (for tests and calibration)."""
    exp = task.expected
    if task.type in ("solving", "optimisation"):
        return f"ANSWER: {shortest_path(exp['grid'])}"
    if task.type == "analysis":
        return "ANSWER: NO" if exp["length"] is None else f"ANSWER: {exp['length']}"
    rows, cols = exp["rows"], exp["cols"]
    grid = (
        ["S" + "." * (cols - 1)]
        + ["#" * (cols - 1) + "." for _ in range(rows - 2)]
        + ["#" * (cols - 1) + "E"]
    )
    return "ANSWER:\n" + "\n".join(grid)


def _grade_drawn(exp: dict[str, int], text: str) -> Grade:
    grid = grid_lines(final_answer(text) or text, "#.SE") or grid_lines(text, "#.SE")
    if not grid:
        return fail("no maze in the answer")
    rows, cols = exp["rows"], exp["cols"]
    if len(grid) != rows or any(len(line) != cols for line in grid):
        return fail(f"the maze is not {rows}x{cols}")
    if (
        grid[0][0] != "S"
        or grid[-1][-1] != "E"
        or "".join(grid).count("S") != 1
        or "".join(grid).count("E") != 1
    ):
        return fail("S must be top-left and E bottom-right, once each")
    if "".join(grid).count("#") < exp["walls"]:
        return fail(f"fewer than {exp['walls']} walls")
    return CORRECT if shortest_path(grid) is not None else fail("E cannot be reached from S")
