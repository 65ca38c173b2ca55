"""Plans from LLMCompiler text (streamed), JSON and tool_calls, and their bad-input errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from thrifty.agent import (
    PlanBuilder,
    PlanError,
    Ref,
    parse_json_plan,
    parse_stream,
    parse_text,
    parse_tool_calls,
)
from thrifty.agent.plan import find_refs, resolve

from .helpers import registry

PLAN = """Thought: two independent look-ups.
1. search("Mariana Trench depth")
2. search(query="Puerto Rico Trench depth")
Thought: combine.
3. calc("x1 * 0.8 < x2 * 1.2", [$1, $2])
4. search("compare $1 with ${2}")
5. join()
6. search("never parsed")
"""


def test_text_plan_binds_args_and_finds_dependencies() -> None:
    builder = PlanBuilder(registry())
    tasks = parse_text(PLAN, builder)
    assert [t.id for t in tasks] == [1, 2, 3, 4]
    assert tasks[0].args == {"query": "Mariana Trench depth"}
    assert tasks[0].thought == "two independent look-ups."
    assert tasks[2].args == {"expression": "x1 * 0.8 < x2 * 1.2", "context": [Ref(1), Ref(2)]}
    assert tasks[2].deps == {1, 2} and tasks[3].deps == {1, 2} and tasks[0].deps == set()
    assert builder.joined


def test_dollar_amounts_in_text_are_not_references() -> None:
    tasks = parse_text('1. search("costs $5")\n2. search("$1 costs $9")\n', PlanBuilder(registry()))
    assert tasks[0].deps == set() and tasks[1].deps == {1}


def test_resolve_substitutes_whole_values_and_text() -> None:
    args = {"a": "$1", "b": "is ${1} > $2?", "c": [Ref(2), {"d": "$2"}]}
    assert find_refs(args) == {1, 2}
    assert resolve(args, {1: [3, 4], 2: 7}) == {"a": [3, 4], "b": "is [3, 4] > 7?", "c": [7, {"d": 7}]}


async def test_stream_yields_each_task_as_its_line_completes() -> None:
    seen: list[int] = []
    pulled: list[str] = []

    async def deltas() -> AsyncIterator[str]:
        for piece in ['1. search("a', '")\n2. sea', 'rch("b")\n', "3. join()\n", "4. search('x')\n"]:
            pulled.append(piece)
            yield piece

    async for task in parse_stream(deltas(), PlanBuilder(registry())):
        seen.append(task.id)
        if task.id == 1:
            # task 1 is available before the planner has written task 2's line
            assert len(pulled) == 2
    assert seen == [1, 2]
    assert len(pulled) == 4  # stopped reading after join()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('1. search("a")\n2. search("$3")\n', "refers to $3"),
        ("1. join_all($1)\n", "itself"),
        ('1. nope("a")\n', "unknown tool 'nope'"),
        ("1. search(42)\n", "query must be string"),
        ("1. search()\n", "missing required argument 'query'"),
        ('1. search("a")\n1. search("b")\n', "defined twice"),
        ("1. search(open('/etc/passwd'))\n", "only literals"),
        ("1. search(x)\n", "unknown name"),
        ('1. search("a", "b")\n', "takes 1 arguments"),
    ],
)
def test_bad_text_plans_fail_before_running(text: str, problem: str) -> None:
    with pytest.raises(PlanError, match=problem.replace("$", r"\$").replace("(", r"\(")):
        parse_text(text, PlanBuilder(registry()))


def test_json_plan_in_any_order_with_fallback() -> None:
    plan = {
        "tasks": [
            {"id": 2, "tool": "join_all", "args": {"value": ["$1", "x"]}, "fallback": {"value": "none"}},
            {"id": 1, "tool": "search", "args": ["a"]},
        ]
    }
    tasks = parse_json_plan(plan, PlanBuilder(registry()))
    by_id = {t.id: t for t in tasks}
    assert by_id[2].deps == {1} and by_id[2].fallback is not None and by_id[2].fallback.value == "none"


def test_json_plan_cycle_is_reported_with_its_tasks() -> None:
    plan = [
        {"id": 1, "tool": "search", "args": {"query": "$3"}},
        {"id": 2, "tool": "search", "args": {"query": "$1"}},
        {"id": 3, "tool": "search", "args": {"query": "$2"}},
        {"id": 4, "tool": "search", "args": {"query": "ok"}},
    ]
    with pytest.raises(PlanError, match=r"cycle among tasks \$1, \$2, \$3"):
        parse_json_plan(plan, PlanBuilder(registry()))


def test_json_plan_missing_reference() -> None:
    with pytest.raises(PlanError, match=r"refers to \$9"):
        parse_json_plan('[{"id": 1, "tool": "search", "args": {"query": "$9"}}]', PlanBuilder(registry()))


def test_tool_calls_are_numbered_after_earlier_rounds() -> None:
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "search", "arguments": '{"query": "x"}'}},
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "join_all", "arguments": '{"value": "$3"}'},
        },
    ]
    tasks = parse_tool_calls(calls, PlanBuilder(registry(), earlier={1, 2}))
    assert [(t.id, t.call_id) for t in tasks] == [(3, "call_a"), (4, "call_b")]
    assert tasks[1].deps == {3}


def test_tool_calls_with_bad_json_arguments() -> None:
    calls = [{"id": "c", "function": {"name": "search", "arguments": "{oops"}}]
    with pytest.raises(PlanError, match="not JSON"):
        parse_tool_calls(calls, PlanBuilder(registry()))


def test_replan_may_reference_earlier_rounds() -> None:
    tasks = parse_text('3. search("again $1")\n', PlanBuilder(registry(), earlier={1, 2}))
    assert tasks[0].deps == {1}
    with pytest.raises(PlanError, match="defined twice"):
        parse_text('2. search("x")\n', PlanBuilder(registry(), earlier={1, 2}))
