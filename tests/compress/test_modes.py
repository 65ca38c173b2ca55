"""Each mode on real-looking histories: what goes, what must stay (golden inputs and properties)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thrifty.compress.engine import shrink
from thrifty.compress.settings import Knobs
from thrifty.compress.tokens import estimate, messages_tokens
from thrifty.types import message_text

from .histories import CODE, LOG, PACKAGE, Message, agent_history, call, chat_history, result

FENCE = re.compile(r"```.*?```", re.S)
ESSAYS = next(
    (
        p / "shared/data/compress/essays"
        for p in Path(__file__).resolve().parents
        if (p / "shared/data").is_dir()
    ),
    Path("../shared/data/compress/essays"),
)


def pairs(messages: list[Message]) -> list[tuple[str, str]]:
    """(call id, the id of the tool message answering it), in order."""
    out: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        for n, c in enumerate(message.get("tool_calls") or ()):
            answer = messages[i + 1 + n]
            out.append((c["id"], str(answer.get("tool_call_id"))))
    return out


def tokens(messages: list[Message]) -> int:
    return messages_tokens(messages, estimate)


# -- golden ------------------------------------------------------------------------


def test_minimal_golden() -> None:
    long_json = json.dumps({"rows": [{"id": i, "name": f"item {i}", "ok": True} for i in range(8)]}, indent=2)
    messages = [
        {"role": "system", "content": "Be  brief."},
        {"role": "user", "content": "Check the config   please.  \n\n\n\nThanks"},
        call("c1", "read", {"p": "a"}),
        result("c1", long_json),
        {"role": "assistant", "content": "   "},
        call("c2", "read", {"p": "a"}),
        result("c2", long_json),
        {"role": "user", "content": "And   now?"},
    ]
    out, tally = shrink(messages, Knobs(mode="minimal"))
    assert out == [
        {"role": "system", "content": "Be  brief."},  # system instructions are never touched
        {"role": "user", "content": "Check the config please.\n\nThanks"},
        call("c1", "read", {"p": "a"}),
        result("c1", json.dumps(json.loads(long_json), separators=(",", ":"))),
        call("c2", "read", {"p": "a"}),
        result("c2", "[identical to the result of tool call c1 above]"),
        {"role": "user", "content": "And   now?"},  # the last user message goes as sent
    ]
    assert dict(tally.items()) == {"duplicate": 1, "empty": 1, "json": 2, "whitespace": 1}


def test_balanced_golden_summarises_old_turns_and_keeps_code() -> None:
    script = (
        "Here is the script again:\n\n```sh\nrsync -a build/ srv:/app\nssh srv systemctl restart app\n```"
    )
    messages = [
        {"role": "system", "content": "Answer in one line."},
        {
            "role": "user",
            "content": "What does the deploy script do? It copies the build to the server, "
            "restarts the service and checks the health endpoint twice.",
        },
        {
            "role": "assistant",
            "content": "It copies the build, restarts the service, then polls /health. "
            "It stops after two failed checks.",
        },
        {"role": "user", "content": script},
        {
            "role": "assistant",
            "content": "The restart runs over ssh. Nothing waits for the old process to exit.",
        },
        {"role": "user", "content": "So can two copies run at once?"},
    ]
    out, tally = shrink(messages, Knobs(mode="balanced", budget_tokens=40, block=2))
    assert out == [
        messages[0],
        {
            "role": "user",
            "content": "[Summary of the 2 earlier messages of this conversation, condensed by thrifty]\n"
            "- user: What does the deploy script do?\n"
            "- assistant: It copies the build, restarts the service, then polls /health.",
        },
        *messages[3:],
    ]
    assert dict(tally.items()) == {"summarised": 2}


def test_balanced_references_repeated_and_quoted_paragraphs() -> None:
    out, tally = shrink(chat_history(4), Knobs(mode="balanced", budget_tokens=100_000))
    texts = [message_text(m) for m in out]
    assert "Startups are a way to compress" in texts[1]  # the first occurrence stays
    assert all("[repeats a paragraph of an earlier user message" in t for t in texts[2:-1])
    assert texts[2].startswith("> [repeats")  # a quote stays a quote
    assert "case 3 took 5 months" in texts[-2]  # what is new in a turn stays
    assert dict(tally.items())["near-duplicate"] == 7


def test_balanced_keeps_only_new_lines_of_a_repeated_tool_output() -> None:
    messages = [
        {"role": "user", "content": "Run the tests."},
        call("a", "run_tests", {}),
        result("a", LOG),
        call("b", "run_tests", {}),
        result("b", LOG.replace("test_case_7 PASSED", "test_case_7 FAILED")),
        {"role": "user", "content": "What changed?"},
    ]
    out, _ = shrink(messages, Knobs(mode="balanced"))
    assert message_text(out[4]) == (
        "[same as the result of tool call a above, except these lines:]\ntests/test_api.py::test_case_7 FAILED"
    )
    assert pairs(out) == [("a", "a"), ("b", "b")]


def test_aggressive_keeps_what_answers_the_question() -> None:
    out, tally = shrink(chat_history(), Knobs(mode="aggressive", budget_tokens=600))
    text = "\n".join(message_text(m) for m in out)
    assert "case 3 raised money after 5 months" in text
    assert tokens(out) < 0.25 * tokens(chat_history())
    assert tally.removed["dropped-chunks"] > 0


# -- what must survive -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["minimal", "balanced", "aggressive"])
def test_agent_history_keeps_every_tool_pair_and_the_question(mode: str) -> None:
    history = agent_history()
    original = copy.deepcopy(history)
    out, _ = shrink(history, Knobs(mode=mode, budget_tokens=300))
    assert history == original  # the client's messages are not mutated
    assert out[-1] == history[-1]
    kept_calls = [c for c, _ in pairs(out)]
    assert pairs(out) == [(c, c) for c in kept_calls]
    assert kept_calls == [c for c, _ in pairs(history)][-len(kept_calls) :]  # the newest calls stay, in order
    assert out[0] == history[0]
    assert tokens(out) < tokens(history)


@pytest.mark.parametrize("mode", ["minimal", "balanced"])
def test_code_blocks_survive_byte_for_byte(mode: str) -> None:
    out, _ = shrink(agent_history(), Knobs(mode=mode, budget_tokens=50))
    assert CODE in "\n".join(message_text(m) for m in out)


def test_minimal_saves_on_an_agent_history_and_is_lossless_for_json() -> None:
    out, _ = shrink(agent_history(), Knobs(mode="minimal"))
    assert tokens(out) <= 0.8 * tokens(agent_history())
    jsons = [json.loads(message_text(m)) for m in out if message_text(m).startswith("{")]
    assert jsons and all(j == json.loads(PACKAGE) for j in jsons)


def test_a_short_question_is_never_cut_in_aggressive_mode() -> None:
    messages = [{"role": "user", "content": "Is 7 prime?"}]
    out, _ = shrink(messages, Knobs(mode="aggressive", ratio=0.05))
    assert out == messages


def test_aggressive_honours_the_ratio_on_a_long_document() -> None:
    essay = (
        next(iter(sorted(ESSAYS.glob("*.txt")))).read_text()
        if ESSAYS.is_dir()
        else (agent_history()[4]["content"] + " ") * 200
    )
    question = "What did the author learn about writing essays?"
    messages = [{"role": "user", "content": f"Read this:\n\n{essay}\n\n{question}"}]
    for ratio in (0.2, 0.5):
        out, _ = shrink(messages, Knobs(mode="aggressive", ratio=ratio))
        kept = tokens(out) / tokens(messages)
        assert ratio * 0.8 < kept <= ratio + 0.05, (ratio, kept)
        text = message_text(out[0])
        assert text.startswith("Read this:") and text.endswith(question)


# -- properties ----------------------------------------------------------------------

_TEXTS = st.sampled_from(
    [
        "",
        "   ",
        "ok",
        "Please look at the build log and tell me why it fails.",
        "The deploy step restarts the service.   It waits   for the health check.\n\n\n\nThen it stops.",
        PACKAGE,
        LOG,
        "Here is the fix:\n\n" + CODE,
        "> quoted reply\n\nmy answer to it, which is somewhat longer than that",
    ]
)


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    messages: list[Message] = [{"role": "system", "content": draw(_TEXTS)}] if draw(st.booleans()) else []
    for i in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["user", "assistant", "tool"]))
        if kind == "tool":
            messages += [call(f"c{i}", "f", {"i": i}), result(f"c{i}", draw(_TEXTS))]
        else:
            messages.append({"role": kind, "content": draw(_TEXTS)})
    messages.append({"role": "user", "content": draw(_TEXTS)})
    return messages


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations(), st.sampled_from(["minimal", "balanced", "aggressive"]), st.integers(20, 400))
def test_properties_hold_for_every_conversation(messages: list[Message], mode: str, budget: int) -> None:
    out, _ = shrink(messages, Knobs(mode=mode, budget_tokens=budget, block=2))
    assert out[-1] == messages[-1]  # the last user message
    assert all(c == r for c, r in pairs(out))  # every kept call is answered by its own result
    assert {c for c, _ in pairs(out)} <= {c for c, _ in pairs(messages)}
    assert tokens(out) <= tokens(messages)
    if mode != "aggressive":
        text = "\n".join(message_text(m) for m in out)
        assert all(block in text for m in messages for block in FENCE.findall(message_text(m)))
    if mode == "minimal":
        again, _ = shrink(out, Knobs(mode="minimal"))
        assert again == out
