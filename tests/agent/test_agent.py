"""The agent loop with a scripted planner and joiner: answers, replans, bad plans, the CLI."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from thrifty.agent import State, run_agent
from thrifty.agent.cli import agent_main
from thrifty.agent.view import LiveView, timeline
from thrifty.errors import UpstreamConnectionError
from thrifty.testing import FakeBackend
from thrifty.types import ChatRequest, Chunk

from .helpers import registry, spec

Script = list[str | BaseException]


def scripted(plans: Script, joins: Script) -> FakeBackend:
    """One FakeBackend for both roles: plan prompts get ``plans``, join prompts ``joins``."""

    def answer(request: ChatRequest) -> str | BaseException:
        system = request.messages[0]["content"]
        queue = plans if "planning calls to tools" in system else joins
        return queue.pop(0)

    return FakeBackend(answer)


PLAN = 'Thought: add.\n1. calc("2 + 2")\n2. calc("x * 10", $1)\n3. join()\n'


async def test_plan_run_join_answers() -> None:
    backend = scripted([PLAN], ["Thought: done.\nAction: Finish(40)"])
    result = await run_agent("What is (2+2)*10?", backend, model="m", tools=registry())
    assert result.ok and result.answer == "40" and result.replans == 0
    assert [(r.id, r.result) for r in result.tasks] == [(1, 4), (2, 40)]
    planner_prompt = backend.requests[0].messages[0]["content"]
    assert "calc(expression: string" in planner_prompt and "Example" in planner_prompt
    join_prompt = backend.requests[1].messages[1]["content"]
    assert "$2 = calc(" in join_prompt and "-> 40" in join_prompt


class Gated:
    """Streams a FakeBackend's plan but pauses after the first line until task 1 has run."""

    def __init__(self, inner: FakeBackend, gate: asyncio.Event) -> None:
        self.inner, self.gate, self.name = inner, gate, "gated"

    async def complete(self, request: ChatRequest) -> Any:
        return await self.inner.complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        seen = ""
        async for chunk in self.inner.stream(request):
            for choice in chunk.get("choices") or ():
                seen += (choice.get("delta") or {}).get("content") or ""
            yield chunk
            if "\n" in seen and not self.gate.is_set():
                async with asyncio.timeout(5):
                    await self.gate.wait()

    def children(self) -> tuple[FakeBackend]:
        return (self.inner,)

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


async def test_tasks_start_while_the_planner_is_still_writing() -> None:
    gate = asyncio.Event()

    def first(value: Any = None) -> str:
        gate.set()
        return "first"

    reg = registry(spec("first", first, kind="thread"))
    inner = scripted(['1. first()\n2. search("after")\n3. join()\n'], ["Action: Finish(ok)"])
    result = await run_agent("q", Gated(inner, gate), model="m", tools=reg)
    assert result.answer == "ok" and [r.state for r in result.tasks] == [State.DONE, State.DONE]


async def test_replan_keeps_ids_and_earlier_results() -> None:
    plans: Script = ['1. calc("20 + 1")\n2. join()\n', '2. calc("x * 2", $1)\n3. join()\n']
    backend = scripted(plans, ["Action: Replan(need the double)", "Action: Finish(42)"])
    result = await run_agent("q", backend, model="m", tools=registry())
    assert result.answer == "42" and result.replans == 1
    assert [(r.id, r.result) for r in result.tasks] == [(1, 21), (2, 42)]
    replan_prompt = backend.requests[2].messages[1]["content"]
    assert "$1 = calc(" in replan_prompt and "need the double" in replan_prompt
    assert "numbered from 2" in replan_prompt


@pytest.mark.parametrize(
    ("bad", "problem", "next_id"),
    [
        ('1. calc("1")\n2. calc($7)\n3. join()\n', "refers to $7", 2),
        ("1. rm_rf('/')\n2. join()\n", "unknown tool 'rm_rf'", 1),
        ("1. calc(5)\n2. join()\n", "expression must be string", 1),
    ],
)
async def test_a_bad_plan_is_sent_back_to_the_planner(bad: str, problem: str, next_id: int) -> None:
    backend = scripted([bad, f'{next_id}. calc("1 + 1")\n{next_id + 1}. join()\n'], ["Action: Finish(2)"])
    result = await run_agent("q", backend, model="m", tools=registry())
    assert result.answer == "2" and result.replans == 1
    assert problem in backend.requests[1].messages[1]["content"]


async def test_the_run_ends_with_an_error_when_replans_run_out() -> None:
    backend = scripted(["1. nope()\n", "1. nope()\n"], [])
    result = await run_agent("q", backend, model="m", tools=registry(), max_replans=1)
    assert not result.ok and result.answer == "" and "unknown tool" in (result.error or "")


async def test_a_failing_planner_is_contained() -> None:
    backend = scripted([UpstreamConnectionError("refused")], [])
    result = await run_agent("q", backend, model="m", tools=registry(), max_replans=0)
    assert result.error == "the planner failed: refused"


async def test_a_failed_task_is_reported_to_the_joiner() -> None:
    async def boom() -> str:
        raise RuntimeError("service down")

    reg = registry(spec("boom", boom, params={"type": "object", "properties": {}}))
    backend = scripted(['1. boom()\n2. search("x")\n3. join()\n'], ["Action: Finish(partial)"])
    result = await run_agent("q", backend, model="m", tools=reg)
    assert result.answer == "partial"
    assert "FAILED: service down" in backend.requests[1].messages[1]["content"]


def run_cli(
    argv: list[str], backend: FakeBackend, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    factory: Callable[[Any], Any] = lambda args: backend  # noqa: E731
    code = agent_main(argv, backend_factory=factory)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_prints_answer_graph_and_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    backend = scripted([PLAN], ["Action: Finish(40)"])
    code, out, err = run_cli(["What is (2+2)*10?", "--model", "m"], backend, capsys)
    assert code == 0 and out.strip() == "40"
    assert "✓ $2" in err and "timeline:" in err


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    backend = scripted([PLAN], ["Action: Finish(40)"])
    code, out, _ = run_cli(["q", "--json", "--cap", "1"], backend, capsys)
    data = json.loads(out)
    assert code == 0 and data["answer"] == "40" and [t["result"] for t in data["tasks"]] == [4, 40]


def test_cli_failure_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    backend = scripted(["1. nope()\n"], [])
    code, _, err = run_cli(["q", "--max-replans", "0"], backend, capsys)
    assert code == 1 and "unknown tool" in err


async def test_live_view_redraws_in_place_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    view = LiveView(out, min_interval_s=0)
    backend = scripted([PLAN], ["Action: Finish(40)"])
    result = await run_agent("q", backend, model="m", tools=registry(), on_event=view)
    text = out.getvalue()
    assert "\x1b[" in text and "running" in text and "done 2" in text
    lines = timeline(result.tasks, width=20).splitlines()
    assert lines[0].startswith("timeline:") and len(lines) == 3 and "█" in lines[1]


async def test_a_json_plan_from_the_planner_is_accepted() -> None:
    plan = '```json\n{"tasks": [{"id": 1, "tool": "calc", "args": {"expression": "6 * 7"}}]}\n```'
    backend = scripted([plan], ["Action: Finish(42)"])
    result = await run_agent("q", backend, model="m", tools=registry())
    assert result.answer == "42" and result.tasks[0].result == 42


async def test_broken_json_plan_asks_for_a_new_plan() -> None:
    backend = scripted(['{"tasks": [', '1. calc("1")\n'], ["Action: Finish(1)"])
    result = await run_agent("q", backend, model="m", tools=registry())
    assert result.answer == "1" and "does not parse" in backend.requests[1].messages[1]["content"]


async def test_a_planner_that_never_finishes_is_cut_off() -> None:
    backend = FakeBackend("1. calc('1')\n", delay=30)
    result = await run_agent("q", backend, model="m", tools=registry(), planner_timeout_s=0.05, max_replans=0)
    assert result.error == "the planner did not finish within 0.05s"


async def test_a_planner_may_answer_with_native_tool_calls() -> None:
    from thrifty.types import ChatResponse, completion_body

    def call(name: str, args: str) -> dict[str, Any]:
        return {"id": f"call_{name}", "type": "function", "function": {"name": "calc", "arguments": args}}

    calls = [call("a", '{"expression": "6 * 7"}'), call("b", '{"expression": "x + 1", "context": "$1"}')]
    planned = ChatResponse(body=completion_body(id="r", model="m", content=None, tool_calls=calls))

    def answer(request: ChatRequest) -> Any:
        if request.params.get("tools"):
            assert {t["function"]["name"] for t in request.params["tools"]} >= {"calc"}
            return planned
        return "Action: Finish(43)"

    backend = FakeBackend(answer)
    result = await run_agent("q", backend, model="m", tools=registry(), planner="tool_calls")
    assert result.answer == "43" and [(r.id, r.result) for r in result.tasks] == [(1, 42), (2, 43)]
    assert backend.requests[0].trace.annotations["agent"] == "planner"
