"""Rewrite operators: what each does to a request, and when none may touch it."""

from __future__ import annotations

import pytest

from thrifty.learn.operators import OPERATORS, applicable, operator_for, opted_out
from thrifty.testing import chat


def test_the_seed_example_rewrite() -> None:
    op = operator_for(["too_complex", "missing_examples"])
    assert op is not None and op.name == "simplify_examples"
    assert op.rewrite("Explain microservices") == "Explain microservices simply with practical examples"
    assert op.rewrite("Explain microservices?") == "Explain microservices simply with practical examples?"
    assert op.rewrite("Explain microservices simply with practical examples") == (
        "Explain microservices simply with practical examples"
    )


@pytest.mark.parametrize(
    ("reason", "name"),
    [
        ("too_long", "concise"),
        ("too_short", "detailed"),
        ("wrong", "step_by_step"),
        ("wrong_language", "user_language"),
        ("format", "format_hint"),
        ("off_topic", "on_topic"),
    ],
)
def test_each_reason_has_a_system_operator(reason: str, name: str) -> None:
    op = operator_for([reason])
    assert op is not None and op.name == name
    messages = [{"role": "user", "content": "What is DNS?"}]
    applied = op.apply(messages)
    assert applied[0] == {"role": "system", "content": op.system}
    assert applied[1] == messages[0] and len(messages) == 1  # the input is left alone
    with_system = op.apply([{"role": "system", "content": "Be kind."}, *messages])
    assert with_system[0]["content"] == f"Be kind.\n\n{op.system}" and len(with_system) == 2


def test_no_operator_for_praise() -> None:
    assert operator_for(["good"]) is None and operator_for([]) is None


def test_tool_turns_and_json_mode_are_left_alone() -> None:
    op = OPERATORS["simplify_examples"]
    assert applicable(chat("Explain DNS"), op)
    assert not applicable(chat("Explain DNS", tools=[{"type": "function", "function": {"name": "f"}}]), op)
    turn = chat("x")
    turn.messages.append({"role": "tool", "tool_call_id": "1", "content": "42"})
    assert not applicable(turn, op)
    json_mode = chat("Explain DNS", response_format={"type": "json_object"})
    assert not applicable(json_mode, op)
    assert applicable(json_mode, OPERATORS["user_language"])  # format-safe


def test_opting_out() -> None:
    assert opted_out({"learn": False}) and opted_out({"learn": "off"})
    assert not opted_out({}) and not opted_out({"learn": True})
