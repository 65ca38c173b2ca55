"""The executor: true parallelism, no level barriers, priority, failures, timeouts, pools."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from thrifty.agent import (
    DependencyFailed,
    Durations,
    Executor,
    PlanBuilder,
    State,
    TaskTimeout,
    ToolError,
    parse_json_plan,
    parse_text,
)
from thrifty.agent.builtin import CALC

from .helpers import Gate, registry, spec


async def run_text(reg: Any, text: str, **kw: Any) -> dict[int, Any]:
    ex = Executor(reg, **kw)
    try:
        return await ex.run(parse_text(text, PlanBuilder(reg)))
    finally:
        await ex.aclose()


async def test_results_flow_along_references() -> None:
    runs = await run_text(registry(), '1. search("a")\n2. search("b")\n3. join_all([$1, $2, "c"])\n')
    assert runs[3].result == "<a>+<b>+c" and runs[3].state is State.DONE


async def test_independent_tasks_run_at_the_same_time() -> None:
    gate = Gate(3)
    reg = registry(spec("meet", gate.meet))
    runs = await run_text(reg, "1. meet(1)\n2. meet(2)\n3. meet(3)\n4. join_all([$1, $2, $3])\n")
    assert runs[4].result == "1+2+3"


async def test_a_task_starts_when_its_own_inputs_are_ready_not_its_level() -> None:
    # $2 cannot finish until $3 (which needs only $1) has run: a level barrier would deadlock.
    released = asyncio.Event()

    async def slow(value: Any = None) -> str:
        async with asyncio.timeout(5):
            await released.wait()
        return "slow"

    def release(value: Any = None) -> str:
        released.set()
        return "released"

    reg = registry(spec("slow", slow), spec("release", release, kind="thread"))
    runs = await run_text(reg, '1. search("a")\n2. slow("x")\n3. release($1)\n')
    assert [runs[i].state for i in (1, 2, 3)] == [State.DONE] * 3


async def test_cap_prefers_the_longest_remaining_path() -> None:
    order: list[int] = []

    def quick(value: Any = None) -> Any:
        order.append(value)
        return value

    reg = registry(spec("quick", quick, kind="thread", est_s=1.0))
    # $3 heads a chain of three; the lone $1 and $2 come first by id and by position.
    plan = [
        {"id": 1, "tool": "quick", "args": {"value": 1}},
        {"id": 2, "tool": "quick", "args": {"value": 2}},
        {"id": 3, "tool": "quick", "args": {"value": 3}},
        {"id": 4, "tool": "quick", "args": {"value": "$3"}},
        {"id": 5, "tool": "quick", "args": {"value": "$4"}},
    ]
    ex = Executor(reg, cap=1)
    await ex.run(parse_json_plan(plan, PlanBuilder(reg)))
    assert order[0] == 3


async def test_retryable_errors_are_retried_and_others_are_not() -> None:
    calls = {"flaky": 0, "broken": 0}

    async def flaky(value: Any = None) -> str:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ToolError("try again", retryable=True)
        return "ok"

    async def broken(value: Any = None) -> str:
        calls["broken"] += 1
        raise ToolError("no")

    reg = registry(spec("flaky", flaky, retries=2), spec("broken", broken, retries=2))
    runs = await run_text(reg, "1. flaky()\n2. broken()\n", backoff_s=0)
    assert runs[1].result == "ok" and runs[1].attempts == 2
    assert runs[2].state is State.FAILED and calls["broken"] == 1


async def test_failure_fails_dependents_while_other_branches_finish() -> None:
    async def boom(value: Any = None) -> str:
        raise RuntimeError("tool crashed")

    reg = registry(spec("boom", boom))
    runs = await run_text(reg, '1. boom()\n2. join_all($1)\n3. join_all($2)\n4. search("fine")\n')
    assert runs[1].state is State.FAILED and "crashed" in str(runs[1].error)
    assert isinstance(runs[2].error, DependencyFailed) and isinstance(runs[3].error, DependencyFailed)
    assert runs[4].result == "<fine>"


async def test_a_hanging_tool_is_stopped_by_its_timeout() -> None:
    async def hang(value: Any = None) -> str:
        await asyncio.Event().wait()
        return "never"

    reg = registry(spec("hang", hang, timeout_s=0.05))
    runs = await run_text(reg, '1. hang()\n2. join_all($1)\n3. search("ok")\n')
    assert isinstance(runs[1].error, TaskTimeout) and runs[2].state is State.FAILED
    assert runs[3].state is State.DONE


async def test_fallbacks_replace_a_failed_input_or_a_failed_call() -> None:
    async def boom(value: Any = None) -> str:
        raise RuntimeError("down")

    reg = registry(spec("boom", boom))
    plan = [
        {"id": 1, "tool": "boom"},
        {"id": 2, "tool": "search", "args": {"query": "b"}},
        {
            "id": 3,
            "tool": "join_all",
            "args": {"value": ["$1", "$2"]},
            "fallback": {"tool": "join_all", "args": {"value": "$2"}},
        },
        {"id": 4, "tool": "boom", "fallback": {"value": "default"}},
        {"id": 5, "tool": "join_all", "args": {"value": "$4"}},
    ]
    ex = Executor(reg)
    runs = await ex.run(parse_json_plan(plan, PlanBuilder(reg)))
    assert runs[3].result == "<b>" and runs[3].used_fallback
    assert runs[4].result == "default" and runs[5].result == "default"


async def test_cancel_a_subtree_leaves_the_rest_running() -> None:
    started = asyncio.Event()

    async def wait_forever(value: Any = None) -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    reg = registry(spec("wait_forever", wait_forever))
    ex = Executor(reg)
    for task in parse_text('1. wait_forever()\n2. join_all($1)\n3. search("other")\n', PlanBuilder(reg)):
        ex.add(task)
    ex.close()
    await started.wait()
    assert sorted(ex.cancel(1)) == [1, 2]
    runs = await ex.wait()
    assert runs[1].state is State.CANCELLED and runs[2].state is State.CANCELLED
    assert runs[3].state is State.DONE


async def test_tasks_added_while_running_are_picked_up() -> None:
    reg = registry()
    builder = PlanBuilder(reg)
    ex = Executor(reg)
    first = parse_text('1. search("a")\n', builder)
    ex.add(first[0])
    await asyncio.sleep(0)
    for task in parse_text("2. join_all([$1, 'z'])\n", builder):
        ex.add(task)
    ex.close()
    runs = await ex.wait()
    assert runs[2].result == "<a>+z"


async def test_blocking_tools_run_in_threads_without_stalling_the_loop() -> None:
    ready = threading.Event()

    def block(value: Any = None) -> str:
        if not ready.wait(timeout=5):
            raise RuntimeError("the loop was blocked")
        return "unblocked"

    async def unblock(value: Any = None) -> str:
        ready.set()
        return "set"

    reg = registry(spec("block", block, kind="thread"), spec("unblock", unblock))
    runs = await run_text(reg, "1. block()\n2. unblock()\n")
    assert runs[1].result == "unblocked"


async def test_cpu_tools_run_in_a_process_pool() -> None:
    from dataclasses import replace

    reg = registry()
    reg.register(replace(CALC, kind="process"))
    runs = await run_text(reg, '1. calc("2 ** 10 + 1")\n')
    assert runs[1].result == 1025


async def test_arguments_are_checked_again_once_references_resolve() -> None:
    reg = registry(spec("num", lambda: {"not": "a string"}, kind="thread"))
    runs = await run_text(reg, "1. num()\n2. calc($1)\n")
    assert runs[1].result == {"not": "a string"}
    # a dict is coerced to its JSON text, which is not an arithmetic expression
    assert runs[2].state is State.FAILED


async def test_durations_are_learned_per_tool() -> None:
    durations = Durations(alpha=0.5)
    reg = registry()
    await run_text(reg, '1. search("a")\n2. search("b")\n', durations=durations)
    assert durations.observed["search"] == 2
    assert durations.estimate("search", hint=99.0) < 99.0
    assert durations.estimate("unseen", hint=3.0) == 3.0


async def test_earlier_results_feed_a_new_round() -> None:
    reg = registry()
    ex = Executor(reg, results={1: "old"})
    runs = await ex.run(parse_text("2. join_all([$1, 'new'])\n", PlanBuilder(reg, earlier={1})))
    assert runs[2].result == "old+new"


async def test_cancelling_tasks_that_never_began_still_ends_the_run() -> None:
    reg = registry()
    ex = Executor(reg)
    for task in parse_text('1. search("a")\n2. join_all($1)\n3. search("b")\n', PlanBuilder(reg)):
        ex.add(task)
    ex.cancel_all()
    ex.close()
    async with asyncio.timeout(5):
        runs = await ex.wait()
    assert {r.state for r in runs.values()} == {State.CANCELLED}


async def test_learned_durations_override_the_declared_hints() -> None:
    order: list[str] = []

    def record(name: str) -> Any:
        return lambda: order.append(name)

    reg = registry(
        spec("hinted_slow", record("hinted_slow"), kind="thread", est_s=5.0),
        spec("hinted_fast", record("hinted_fast"), kind="thread", est_s=0.01),
    )
    durations = Durations()
    durations.observe("hinted_slow", 0.01)
    durations.observe("hinted_fast", 5.0)
    ex = Executor(reg, cap=1, durations=durations)
    await ex.run(parse_text("1. hinted_slow()\n2. hinted_fast()\n", PlanBuilder(reg)))
    assert order == ["hinted_fast", "hinted_slow"]


async def test_a_failing_event_hook_does_not_stop_the_run(caplog: pytest.LogCaptureFixture) -> None:
    def hook(run: Any) -> None:
        raise RuntimeError("view crashed")

    runs = await run_text(registry(), '1. search("a")\n2. join_all($1)\n', on_event=hook)
    assert runs[2].result == "<a>"
    assert "event hook failed" in caplog.text


async def test_a_task_s_own_estimate_orders_calls_of_one_tool_under_a_cap() -> None:
    order: list[Any] = []

    def quick(value: Any = None) -> Any:
        order.append(value)
        return value

    reg = registry(spec("quick", quick, est_s=1.0))
    plan = [
        {"id": i, "tool": "quick", "args": {"value": i}, "est_s": est}
        for i, est in ((1, 0.2), (2, 3.0), (3, 1.5))
    ]
    plan.append({"id": 4, "tool": "join_all", "args": {"value": ["$1", "$2", "$3"]}})
    ex = Executor(reg, cap=1)
    try:
        runs = await ex.run(parse_json_plan(plan, PlanBuilder(reg)))
    finally:
        await ex.aclose()
    assert order == [2, 3, 1] and runs[4].result == "1+2+3"


async def test_a_tool_can_estimate_each_call_from_its_arguments() -> None:
    order: list[Any] = []

    def fetch(pages: int) -> int:
        order.append(pages)
        return pages

    params = {"type": "object", "properties": {"pages": {"type": "integer"}}}
    reg = registry(spec("fetch", fetch, params, estimate=lambda args: args["pages"] * 0.1))
    ex = Executor(reg, cap=1)
    try:
        await ex.run(parse_text("1. fetch(2)\n2. fetch(9)\n3. fetch(5)\n", PlanBuilder(reg)))
    finally:
        await ex.aclose()
    assert order == [9, 5, 2]


async def test_the_plan_s_estimate_comes_first_then_the_tool_s_then_the_learned_average() -> None:
    gate = asyncio.Event()

    async def held(value: Any = None) -> Any:
        await gate.wait()
        return value

    durations = Durations()
    durations.observe("avg", 2.0)
    reg = registry(
        spec("held", held),
        spec("guess", held, estimate=lambda args: 3.0),
        spec("avg", held, est_s=9.0),
    )
    plan = [
        {"id": 1, "tool": "held"},
        {"id": 2, "tool": "guess", "args": {"value": "$1"}, "est_s": 5.0},
        {"id": 3, "tool": "guess", "args": {"value": "$1"}},
        {"id": 4, "tool": "avg", "args": {"value": "$1"}},
    ]
    ex = Executor(reg, durations=durations)
    ex.add_all(parse_json_plan(plan, PlanBuilder(reg)))
    assert [ex.estimate_s(i) for i in (2, 3, 4)] == [5.0, 3.0, 2.0]
    assert ex.remaining_s(1) == ex.estimate_s(1) + 5.0
    gate.set()
    ex.close()
    await ex.wait()
    await ex.aclose()


async def test_priorities_follow_averages_learned_while_tasks_wait() -> None:
    """Each waiting task's priority stays its estimate plus its longest waiting dependent's,
    while averages learned mid-run (hints far off the truth) re-rank only what they touch."""
    import random

    rng = random.Random(5)
    tools = [spec(f"t{k}", _noop, est_s=hint) for k, hint in enumerate((2.0, 0.5, 0.01))]
    reg = registry(*tools)
    plan = []
    for i in range(1, 121):
        deps = sorted({rng.randint(max(1, i - 15), i - 1) for _ in range(rng.randint(0, 3))}) if i > 4 else []
        plan.append({"id": i, "tool": f"t{rng.randint(0, 2)}", "args": {"value": [f"${d}" for d in deps]}})
    ex = Executor(reg, cap=2)
    tasks = parse_json_plan(plan, PlanBuilder(reg))
    children: dict[int, list[int]] = {t.id: [] for t in tasks}
    for t in tasks:
        for d in t.deps:
            children[d].append(t.id)
    moved: list[float] = []
    checked = 0

    def check(run: Any) -> None:
        nonlocal checked
        waiting = [t.id for t in tasks if ex.runs[t.id].state in (State.WAITING, State.READY)]
        for tid in waiting:
            tail = max((ex.remaining_s(c) for c in children[tid] if c in waiting), default=0.0)
            assert ex.remaining_s(tid) == pytest.approx(ex.estimate_s(tid) + tail)
            checked += 1
        moved.extend(ex.estimate_s(t) for t in waiting if ex.runs[t].task.tool == "t0")

    ex.on_event = check
    try:
        runs = await ex.run(tasks)
    finally:
        await ex.aclose()
    assert all(r.state is State.DONE for r in runs.values()) and checked > 0
    assert min(moved) < 2.0  # t0's learned average replaced its hint while its tasks waited


async def _noop(value: Any = None) -> Any:
    await asyncio.sleep(0)
    return value
