"""Tools: lazy loading, preload triggers, schemas, and the built-ins' safety limits."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from thrifty.agent import (
    Executor,
    PlanBuilder,
    PlanError,
    State,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolSpec,
    parse_text,
)
from thrifty.agent.builtin import default_registry
from thrifty.agent.builtin.calc import calculate
from thrifty.agent.builtin.files import read_file, search_files
from thrifty.agent.builtin.llm import ask_llm
from thrifty.agent.builtin.web import allowed, http_get
from thrifty.testing import FakeBackend


@pytest.fixture
def lazy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"agent_lazy_tool_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("def shout(text):\n    return text.upper()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def lazy_spec(module: str, **kw: Any) -> ToolSpec:
    params = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    return ToolSpec(name="shout", description="upper-case", parameters=params, target=f"{module}:shout", **kw)


async def test_a_tool_module_is_imported_on_first_use(lazy_module: str) -> None:
    reg = ToolRegistry([lazy_spec(lazy_module, kind="thread")])
    assert lazy_module not in sys.modules and not reg.is_loaded("shout")
    ex = Executor(reg)
    runs = await ex.run(parse_text('1. shout("hi")\n', PlanBuilder(reg)))
    assert runs[1].result == "HI" and lazy_module in sys.modules


async def test_preload_triggers_on_the_question_and_on_companion_tools(lazy_module: str) -> None:
    reg = ToolRegistry([lazy_spec(lazy_module, triggers=(r"\bloud\b",))])
    assert reg.triggered_by("say it LOUD please") == ["shout"]
    assert reg.triggered_by("quietly") == []
    await reg.preload(reg.triggered_by("loud"))
    assert reg.is_loaded("shout")
    builtins = default_registry()
    await builtins.preload(["search_files"])
    assert builtins.is_loaded("read_file")  # read_file preloads with search_files


def test_schemas_for_the_planner() -> None:
    reg = default_registry()
    assert {s["function"]["name"] for s in (t.openai_schema() for t in reg)} == {
        "calc",
        "read_file",
        "search_files",
        "http_get",
        "llm",
    }
    text = reg.planner_text()
    assert "search_files(pattern: string, glob: string = optional" in text


def test_registry_rejects_bad_specs() -> None:
    with pytest.raises(ValueError, match="identifier"):
        ToolRegistry([ToolSpec(name="a-b", description="", parameters={}, target=print)])
    with pytest.raises(ValueError, match="process tools"):
        ToolRegistry(
            [ToolSpec(name="p", description="", parameters={}, target=print, kind="process", context=True)]
        )


@pytest.mark.parametrize(
    ("expression", "context", "value"),
    [
        ("1 + 2 * 3", None, 7),
        ("(2 ^ 3) / 4", None, 2.0),
        ("x1 * 0.8 < x2 * 1.2", ["10,994 m", "8,376 m"], True),
        ("round(sqrt(x) + pi, 2)", "16", 7.14),
        ("max(a, b) - min(a, b)", {"a": 3, "b": 10}, 7),
    ],
)
def test_calc_evaluates_arithmetic(expression: str, context: Any, value: Any) -> None:
    assert calculate(expression, context) == value


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("__import__('os').system('true')", "not allowed"),
        ("(1).__class__", "not allowed"),
        ("9 ** 9 ** 9", "too large"),
        ("open", "unknown name"),
        ("1 / 0", "division"),
        ("1 +", "cannot read"),
    ],
)
def test_calc_refuses_anything_but_arithmetic(expression: str, problem: str) -> None:
    with pytest.raises(ToolError, match=problem):
        calculate(expression)


def test_files_stay_inside_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "notes").mkdir(parents=True)
    (ws / "notes" / "a.md").write_text("alpha\nTODO: beta\n")
    (tmp_path / "secret.txt").write_text("TODO: secret")
    (ws / "link.txt").symlink_to(tmp_path / "secret.txt")
    ctx = ToolContext(workspace=ws)
    assert read_file(ctx, "notes/a.md").startswith("alpha")
    for bad in ("../secret.txt", "/etc/passwd", "link.txt"):
        with pytest.raises(ToolError, match="outside the workspace"):
            read_file(ctx, bad)
    hits = search_files(ctx, "todo")
    assert hits == [{"path": "notes/a.md", "line": 2, "text": "TODO: beta"}]


def test_read_file_caps_its_size(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("x" * 100)
    assert read_file(ToolContext(workspace=tmp_path, max_bytes=10), "big.txt") == "x" * 10 + "\n[truncated]"


def test_the_allow_list_matches_hosts_and_ports() -> None:
    allow = ("127.0.0.1:8080", "*.example.org")
    assert allowed("http://127.0.0.1:8080/x", allow)
    assert not allowed("http://127.0.0.1:9090/x", allow)
    assert allowed("https://docs.example.org/a", allow)
    assert not allowed("https://example.org.evil.com/", allow)
    assert not allowed("file:///etc/passwd", allow)


@pytest.fixture
async def loopback(free_port: int) -> AsyncIterator[str]:
    from aiohttp import web

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="hello from loopback")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:1/elsewhere")

    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get("/moved", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", free_port).start()
    yield f"127.0.0.1:{free_port}"
    await runner.cleanup()


async def test_http_get_fetches_only_allowed_hosts(loopback: str) -> None:
    ctx = ToolContext(http_allow=(loopback,))
    assert await http_get(ctx, f"http://{loopback}/page") == "hello from loopback"
    with pytest.raises(ToolError, match="redirects are not followed"):
        await http_get(ctx, f"http://{loopback}/moved")
    with pytest.raises(ToolError, match="not on the allow-list"):
        await http_get(ToolContext(), f"http://{loopback}/page")


async def test_llm_tool_calls_back_through_the_backend() -> None:
    backend = FakeBackend(lambda req: f"saw: {req.messages[0]['content']}")
    answer = await ask_llm(ToolContext(backend=backend, model="small"), "Which?", ["a", 2])
    assert answer == 'saw: Which?\n\nContext:\n["a", 2]'
    assert backend.requests[0].model == "small"


async def test_unknown_tool_and_bad_args_are_plan_errors() -> None:
    reg = default_registry()
    with pytest.raises(PlanError, match="unknown tool"):
        parse_text('1. search("x")\n', PlanBuilder(reg))
    with pytest.raises(PlanError, match="unexpected argument 'mode'"):
        parse_text('1. read_file("a", mode="rb")\n', PlanBuilder(reg))


async def test_builtins_run_through_the_executor(tmp_path: Path) -> None:
    (tmp_path / "n.txt").write_text("41")
    reg = default_registry()
    ex = Executor(reg, context=ToolContext(workspace=tmp_path))
    runs = await ex.run(parse_text('1. read_file("n.txt")\n2. calc("x + 1", $1)\n', PlanBuilder(reg)))
    await ex.aclose()
    assert runs[2].state is State.DONE and runs[2].result == 42
