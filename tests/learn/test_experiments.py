"""A/B tests: deterministic assignment, promotion and rollback on evidence, with a fixed seed."""

from __future__ import annotations

import random

from thrifty.learn.experiments import Arm, Experiment, prob_better


def test_a_user_always_lands_in_the_same_arm_and_the_share_holds() -> None:
    exp = Experiment("k", "c0")
    assert exp.propose("concise")
    first = [exp.assign(f"user{i}", 0.3)[0] for i in range(2000)]
    again = [exp.assign(f"user{i}", 0.3)[0] for i in range(2000)]
    assert first == again
    assert 0.26 < first.count("concise") / 2000 < 0.34


def run(exp: Experiment, p_champion: float, p_candidate: float, seed: int = 7) -> tuple[str | None, int]:
    rng = random.Random(seed)
    for step in range(1, 2001):
        variant, _ = exp.assign(f"user{step}", 0.5)
        p = p_candidate if variant == exp.candidate else p_champion
        exp.record(variant, 1.0 if rng.random() < p else 0.0)
        decision = exp.decide(min_samples=10, confidence=0.95)
        if decision:
            return decision, step
    return None, 2000


def test_a_better_variant_is_promoted() -> None:
    exp = Experiment("k", "c0")
    exp.propose("simplify_examples")
    decision, step = run(exp, 0.4, 0.8)
    assert decision == "promoted" and exp.champion == "simplify_examples" and exp.candidate is None
    assert step < 200
    assert exp.history[-1]["event"] == "promoted" and exp.history[-1]["p_better"] >= 0.95


def test_a_worse_variant_is_rolled_back_and_not_tried_again() -> None:
    exp = Experiment("k", "c0")
    exp.propose("detailed")
    decision, step = run(exp, 0.6, 0.2)
    assert decision == "rolled_back" and exp.champion == "baseline" and step < 200
    assert not exp.propose("detailed")
    assert exp.propose("concise")


def test_no_decision_before_the_minimum_sample() -> None:
    exp = Experiment("k", "c0")
    exp.propose("concise")
    for _ in range(9):
        exp.record("concise", 1.0)
        exp.record("baseline", 0.0)
    assert exp.decide(min_samples=10, confidence=0.95) is None
    exp.record("concise", 1.0)
    exp.record("baseline", 0.0)
    assert exp.decide(min_samples=10, confidence=0.95) == "promoted"


def test_equal_arms_are_a_coin_toss() -> None:
    assert abs(prob_better(Arm(10, 10), Arm(10, 10)) - 0.5) < 1e-9
    assert prob_better(Arm(18, 2), Arm(2, 18)) > 0.999
