"""A configured cheap model writes the summary of old turns; any failure falls back to the extractive one."""

from __future__ import annotations

from typing import Any

import pytest

from thrifty.backend import Backend
from thrifty.compress import parse_settings
from thrifty.compress.layer import CompressLayer
from thrifty.compress.settings import CompressSettings, Knobs
from thrifty.config import parse_config
from thrifty.errors import ConfigError, UpstreamError
from thrifty.testing import FakeBackend
from thrifty.types import ChatRequest, message_text

from .histories import chat_history

WRITTEN = "- the founders raised money after a few months\n- the user asks for the main claim"
SETTINGS = CompressSettings(
    knobs=Knobs(mode="balanced", budget_tokens=600), summary_model="cheap", summary_timeout_s=5.0
)


def stack(
    summariser: FakeBackend, settings: CompressSettings = SETTINGS
) -> tuple[CompressLayer, FakeBackend]:
    upstream = FakeBackend("ok")
    groups: dict[str, Backend] = {"cheap": summariser}
    return CompressLayer(upstream, "main", settings, groups=groups.get), upstream


def summary_of(sent: ChatRequest) -> str:
    [summary] = [message_text(m) for m in sent.messages if message_text(m).startswith("[Summary of the")]
    return summary


async def test_the_summary_model_writes_the_summary_once_per_span_of_old_turns() -> None:
    cheap = FakeBackend(WRITTEN)
    layer, upstream = stack(cheap)
    history = chat_history()
    first = ChatRequest(model="main", messages=history)
    await layer.complete(first)
    summary = summary_of(upstream.requests[-1])
    assert summary.endswith(WRITTEN)
    assert first.trace.compress is not None and ("model-summary", 1) in first.trace.compress.removed
    [asked] = cheap.requests
    assert asked.options == {"compress": "off", "learn": False}  # no compression or learning of its own
    assert "Part 0 of the essay" in message_text(asked.messages[-1])
    # the next turn keeps the same old turns: the same words, no second call, the prefix stays
    later = ChatRequest(
        model="main", messages=[*history, {"role": "assistant", "content": "ok"}, history[-1]]
    )
    await layer.complete(later)
    assert summary_of(upstream.requests[-1]) == summary
    assert len(cheap.requests) == 1
    assert layer.status()["model_summaries_reused"] == 1


@pytest.mark.parametrize(
    "cheap",
    [
        FakeBackend([UpstreamError("the cheap model is down")]),
        FakeBackend(""),
        FakeBackend("never in time", delay=60.0),
    ],
    ids=["error", "empty", "timeout"],
)
async def test_a_failing_summary_model_leaves_the_extractive_summary(cheap: FakeBackend) -> None:
    settings = CompressSettings(knobs=SETTINGS.knobs, summary_model="cheap", summary_timeout_s=0.05)
    layer, upstream = stack(cheap, settings)
    extractive, plain = stack(FakeBackend(WRITTEN), CompressSettings(knobs=SETTINGS.knobs))
    request = ChatRequest(model="main", messages=chat_history())
    await layer.complete(request)
    await extractive.complete(ChatRequest(model="main", messages=chat_history()))
    assert upstream.requests[-1].messages == plain.requests[-1].messages
    assert request.trace.compress is not None and "model-summary" not in dict(request.trace.compress.removed)
    assert layer.status()["model_summary_failures"] == 1


def config(compress: Any, groups: tuple[str, ...] = ("main", "cheap")) -> Any:
    models = [{"name": g, "deployments": [{"provider": "fake", "model": "x"}]} for g in groups]
    return parse_config({"compress": compress, "models": models}, source="thrifty.yaml")


def test_the_summary_model_must_be_a_group() -> None:
    good = config({"mode": "balanced", "summary_model": "cheap", "summary_timeout_s": 2})
    main, cheap = (parse_settings(good, g) for g in good.models)
    assert (main.summary_model, main.summary_timeout_s) == ("cheap", 2.0)
    assert cheap.summary_model == ""  # the summary group itself summarises extractively
    assert parse_settings(config({"mode": "balanced"}), good.models[0]).summary_model == ""
    bad = config({"mode": "balanced", "summary_model": "nope"})
    with pytest.raises(ConfigError, match="no model group named 'nope'"):
        parse_settings(bad, bad.models[0])
    odd = config({"summary_model": 7})
    with pytest.raises(ConfigError, match="summary_model"):
        parse_settings(odd, odd.models[0])
