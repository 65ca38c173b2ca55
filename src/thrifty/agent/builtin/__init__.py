"""The built-in tools, registered by import path so nothing loads until used."""

from __future__ import annotations

from ..tools import ToolRegistry, ToolSpec

_PKG = "thrifty.agent.builtin"

CALC = ToolSpec(
    name="calc",
    description="Evaluate an arithmetic expression. Earlier results go in context: a list is "
    "named x1, x2, ...; a single value is x. Numbers inside text results are extracted.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 2000}, "context": {}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    target=f"{_PKG}.calc:calculate",
    kind="process",  # a killable worker: its 5 s timeout and memory budget always hold
    timeout_s=5.0,
    memory_mb=256,
    retries=0,
    est_s=0.001,
    examples=('calc("x1 * 0.8 < x2 * 1.2", [$1, $2])',),
    triggers=(r"\d\s*[-+*/^%]\s*\d", r"\b(percent|sum|difference|times|how many|how much)\b"),
)
READ_FILE = ToolSpec(
    name="read_file",
    description="Read a text file from the workspace folder.",
    parameters={
        "type": "object",
        "properties": {"path": {"type": "string", "minLength": 1}},
        "required": ["path"],
        "additionalProperties": False,
    },
    target=f"{_PKG}.files:read_file",
    kind="thread",
    context=True,
    timeout_s=10.0,
    retries=0,
    est_s=0.01,
    examples=('read_file("notes/todo.md")',),
    preload_with=("search_files",),
)
SEARCH_FILES = ToolSpec(
    name="search_files",
    description="Find lines matching a regex in workspace files whose path matches glob.",
    parameters={
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "minLength": 1},
            "glob": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    },
    target=f"{_PKG}.files:search_files",
    kind="thread",
    context=True,
    timeout_s=20.0,
    retries=0,
    est_s=0.05,
    examples=('search_files("TODO", "*.py")',),
    triggers=(r"\b(file|files|folder|workspace|grep)\b",),
)
HTTP_GET = ToolSpec(
    name="http_get",
    description="Fetch a URL (HTTP GET) from an allowed host; returns the body text.",
    parameters={
        "type": "object",
        "properties": {"url": {"type": "string", "minLength": 1}},
        "required": ["url"],
        "additionalProperties": False,
    },
    target=f"{_PKG}.web:http_get",
    kind="async",
    context=True,
    timeout_s=15.0,
    retries=2,
    est_s=0.5,
    examples=('http_get("https://example.org/page")',),
    triggers=(r"https?://",),
)
LLM = ToolSpec(
    name="llm",
    description="Ask a language model; pass earlier results as context. Use for reasoning over text.",
    parameters={
        "type": "object",
        "properties": {"prompt": {"type": "string", "minLength": 1}, "context": {}},
        "required": ["prompt"],
        "additionalProperties": False,
    },
    target=f"{_PKG}.llm:ask_llm",
    kind="async",
    context=True,
    timeout_s=60.0,
    retries=1,
    est_s=1.0,
    examples=('llm("Which is older?", [$1, $2])',),
)

BUILTINS = (CALC, READ_FILE, SEARCH_FILES, HTTP_GET, LLM)


def default_registry() -> ToolRegistry:
    """A registry holding the built-in tools (none of their modules imported yet)."""
    return ToolRegistry(BUILTINS)
