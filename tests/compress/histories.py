"""Real-looking conversations for the compress tests: an agent debugging a build, a chat
with pasted documents and quoted replies."""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]

LOG = "\n".join(
    [f"tests/test_api.py::test_case_{i} PASSED    " for i in range(30)]
    + [
        "tests/test_api.py::test_timeout FAILED",
        "E   TimeoutError: upstream took 31.2 s",
        "",
        "",
        "",
        "== 1 failed, 30 passed ==",
    ]
)
LOG_AGAIN = LOG.replace("31.2 s", "30.9 s").replace("test_case_7 PASSED", "test_case_7 FAILED")
PACKAGE = json.dumps(
    {
        "name": "billing",
        "version": "2.4.1",
        "dependencies": {"httpx": "0.27.0", "orjson": "3.10.0", "pydantic": "2.7.1"},
        "scripts": {"test": "pytest -q", "lint": "ruff check ."},
    },
    indent=4,
)
CODE = "```python\ndef retry(call, attempts=3):\n    for i in range(attempts):\n        try:\n            return call()\n        except TimeoutError:\n            if i == attempts - 1:\n                raise\n```"
TOOLS = [
    {
        "type": "function",
        "function": {"name": "run_tests", "parameters": {"type": "object", "properties": {}}},
    },
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        },
    },
]


def call(id: str, name: str, args: dict[str, Any]) -> Message:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        ],
    }


def result(id: str, content: str) -> Message:
    return {"role": "tool", "tool_call_id": id, "content": content}


def agent_history() -> list[Message]:
    """An agent running the tests three times and reading a file twice."""
    return [
        {"role": "system", "content": "You are a careful build engineer. Use the tools; answer briefly."},
        {"role": "user", "content": "The CI job for billing fails.   Find out why and propose a fix."},
        call("call_1", "run_tests", {}),
        result("call_1", LOG),
        {"role": "assistant", "content": "One test times out. Let me read the package manifest."},
        call("call_2", "read_file", {"path": "package.json"}),
        result("call_2", PACKAGE),
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Run them again to see whether it is flaky."},
        call("call_3", "run_tests", {}),
        result("call_3", LOG),
        call("call_4", "read_file", {"path": "package.json"}),
        result("call_4", PACKAGE),
        call("call_5", "run_tests", {}),
        result("call_5", LOG_AGAIN),
        {"role": "assistant", "content": "It fails each time; here is a retry helper:\n\n" + CODE},
        {"role": "user", "content": "Why does the timeout happen, and is the retry safe for payments?"},
    ]


ESSAY = (
    "Startups are a way to compress a whole working life into a few years. Instead of working at a low "
    "intensity for forty years, you work as hard as you possibly can for four. This pays especially well "
    "in technology, where you earn a premium for working fast. Most of the time the hard part is not the "
    "idea but the execution, which takes patience and a tolerance for being wrong in public."
)


def chat_history(turns: int = 12) -> list[Message]:
    """A long chat: a pasted document, replies quoting it, repeated paragraphs, a final question."""
    messages: list[Message] = [{"role": "system", "content": "You answer questions about essays."}]
    for i in range(turns):
        messages.append(
            {
                "role": "user",
                "content": f"Part {i} of the essay:\n\n{ESSAY} Section {i} adds that "
                f"the founders in case {i} raised money after {i + 2} months.\n\n\n\nWhat is the main claim?",
            }
        )
        messages.append(
            {
                "role": "assistant",
                "content": f"> {ESSAY}\n\nThe claim in part {i} is that intensity "
                f"beats duration; case {i} took {i + 2} months.",
            }
        )
    messages.append({"role": "user", "content": "How many months did case 3 take to raise money?"})
    return messages
