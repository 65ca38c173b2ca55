"""Tools under a budget: CPU tools in killable workers, sync tools off the event loop."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from thrifty.agent import Executor, PlanBuilder, State, TaskTimeout, ToolError, ToolRegistry, parse_text
from thrifty.agent.builtin.calc import calculate
from thrifty.agent.sandbox import Sandbox, ToolCrashed, ToolOverBudget

from .helpers import registry, spec

PARAMETER = {"spin": "seconds", "hog": "mb", "die": "code", "text": "n", "pid": "unused"}


def cpu(name: str, **kw: Any) -> Any:
    """A tool from cpu_tools.py, named by import path: only the worker imports it."""
    params = {"type": "object", "properties": {PARAMETER[name]: {"type": "number"}}}
    return spec(name, f"cpu_tools:{name}", params, kind="process", retries=0, **kw)


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # workers start with this sys.path


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = Sandbox(workers=1)
    yield box
    await box.aclose()


async def run(reg: ToolRegistry, text: str, box: Sandbox, **kw: Any) -> dict[int, Any]:
    ex = Executor(reg, sandbox=box, **kw)
    try:
        async with asyncio.timeout(30):  # a hang guard only: each of these runs ends within seconds
            return await ex.run(parse_text(text, PlanBuilder(reg)))
    finally:
        await ex.aclose()


async def test_a_tool_spinning_in_pure_python_is_stopped_at_its_timeout_and_the_run_goes_on(
    sandbox: Sandbox,
) -> None:
    reg = registry(cpu("spin", timeout_s=0.5), cpu("pid"))
    runs = await run(reg, '1. spin(60)\n2. search("a")\n3. join_all([$2, "b"])\n', sandbox)
    assert isinstance(runs[1].error, TaskTimeout)
    assert runs[3].state is State.DONE and runs[3].result == "<a>+b"
    assert sandbox.stopped == 1
    # the one worker spun for 60 s unless it was killed: the next call gets a fresh one at once
    runs = await run(reg, "1. pid()\n", sandbox)
    assert runs[1].state is State.DONE and runs[1].result != os.getpid()
    assert sandbox.started == 2


async def test_an_executor_stops_the_workers_it_started_when_closed() -> None:
    reg = registry(cpu("spin", timeout_s=0.3), cpu("pid"))
    ex = Executor(reg)
    try:
        async with asyncio.timeout(30):
            runs = await ex.run(parse_text("1. spin(60)\n2. pid()\n", PlanBuilder(reg)))
    finally:
        await ex.aclose()
    assert isinstance(runs[1].error, TaskTimeout)
    worker = runs[2].result
    assert isinstance(worker, int) and worker != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)  # exited and reaped


async def test_a_process_tool_over_its_memory_budget_fails_and_its_worker_is_replaced(
    sandbox: Sandbox,
) -> None:
    reg = registry(cpu("hog", memory_mb=200), cpu("pid"))
    runs = await run(reg, "1. hog(1024)\n2. hog(1)\n", sandbox, cap=1)
    assert isinstance(runs[1].error, ToolOverBudget) and "200 MB" in str(runs[1].error)
    assert runs[2].result == 1 << 20
    assert sandbox.started == 2


async def test_a_worker_that_dies_fails_only_its_call(sandbox: Sandbox) -> None:
    reg = registry(cpu("die"), cpu("pid"))
    first = await run(reg, "1. die(3)\n", sandbox)
    assert isinstance(first[1].error, ToolCrashed) and "exit code 3" in str(first[1].error)
    second = await run(reg, "1. pid()\n", sandbox)
    assert second[1].state is State.DONE


async def test_a_result_over_the_size_bound_is_refused() -> None:
    box = Sandbox(workers=1, result_bytes=1000)
    try:
        reg = registry(cpu("text"))
        runs = await run(reg, "1. text(100)\n2. text(10000)\n", box)
    finally:
        await box.aclose()
    assert runs[1].result == "x" * 100
    assert isinstance(runs[2].error, ToolOverBudget) and "larger than 1,000 bytes" in str(runs[2].error)


async def test_tool_errors_raised_in_a_worker_arrive_as_themselves(sandbox: Sandbox) -> None:
    runs = await run(registry(), '1. calc("1 / 0")\n2. calc("6 * 7")\n', sandbox)
    assert isinstance(runs[1].error, ToolError) and "division" in str(runs[1].error)
    assert runs[2].result == 42


def test_process_tools_need_a_function_a_worker_can_import() -> None:
    with pytest.raises(ValueError, match="module-level function"):
        registry(spec("anon", lambda: 1, kind="process"))


async def test_sync_tools_never_run_on_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    ran_on: list[int] = []
    released = threading.Event()

    def block(value: Any = None) -> str:  # a plain function registered with the default kind
        ran_on.append(threading.get_ident())
        if not released.wait(timeout=5):
            raise RuntimeError("the event loop was blocked")
        return "unblocked"

    async def release(value: Any = None) -> str:
        released.set()
        return "released"

    reg = registry(spec("block", block), spec("release", release))
    ex = Executor(reg)
    try:
        runs = await ex.run(parse_text("1. block()\n2. release()\n3. join_all([1, 2])\n", PlanBuilder(reg)))
    finally:
        await ex.aclose()
    assert runs[1].result == "unblocked" and runs[3].result == "1+2"
    assert ran_on and loop_thread not in ran_on


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("(10**10000)**10000", "more than 4,000 digits"),
        ("(10**1000)**20", "more than 4,000 digits"),
        ("2**9000 * 2**9000", "more than 4,000 digits"),
        ("round(1, -10**9)", "round"),
        ("[1]*10**4*10**4", "more than 10,000 items"),
        ("[1, 2]*6000", "more than 10,000 items"),
        ("-" * 3000 + "1", "longer than 2,000 characters"),
        ("(-8) ** 0.5", "not a real number"),
    ],
)
def test_calc_refuses_work_beyond_its_bounds_before_doing_it(expression: str, problem: str) -> None:
    with pytest.raises(ToolError, match=problem):
        calculate(expression)


def test_calc_still_handles_large_numbers_within_its_bounds() -> None:
    assert calculate("2 ** 10000 > 10 ** 3000") is True
    assert calculate("round(123456, -3)") == 123000
    assert len(str(calculate("(10**100)**39"))) == 3901
