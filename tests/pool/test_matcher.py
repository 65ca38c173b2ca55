"""The matcher: model, context, speed, load, power and prefix affinity decide, in that spirit."""

from __future__ import annotations

from thrifty.pool.matcher import Need, WorkerView, choose, expected_seconds, refusal
from thrifty.pool.protocol import Capabilities, ModelCapability


def view(
    name: str,
    speed: float,
    *,
    model: str = "m",
    n_ctx: int = 4096,
    load: int = 0,
    concurrency: int = 1,
    **kw: object,
) -> WorkerView:
    caps = Capabilities(models=(ModelCapability(model, n_ctx, speed),), concurrency=concurrency, **kw)  # type: ignore[arg-type]
    return WorkerView(id=name, name=name, capabilities=caps, load=load)


NEED = Need("m", prompt_tokens=100, max_tokens=100)


def test_the_fastest_worker_with_the_model_and_room_for_the_context_wins() -> None:
    workers = [
        view("slow", 10),
        view("fast", 100),
        view("other", 1000, model="x"),
        view("tiny", 500, n_ctx=64),
    ]
    assert choose(workers, NEED) == workers[1]
    assert choose(workers, NEED, exclude={"fast"}) == workers[0]
    assert choose([], NEED) is None


def test_a_busy_fast_worker_yields_to_an_idle_one_when_the_queue_costs_more() -> None:
    fast, medium = view("fast", 100, load=3), view("medium", 60)
    assert choose([fast, medium], NEED) == medium
    assert choose([view("fast", 100, load=3, concurrency=8), medium], NEED).id == "fast"  # type: ignore[union-attr]


def test_battery_power_and_affinity_shift_the_choice() -> None:
    ac, battery = view("ac", 50), view("battery", 60, power="battery", battery=80.0)
    assert choose([ac, battery], NEED) == ac
    low = view("low", 100, power="battery", battery=10.0)
    assert expected_seconds(low, NEED) == 3.0  # 100 tokens at 100/s, x3 below 20 %
    assert choose([view("a", 100), view("b", 90)], NEED, affinity="b").id == "b"  # type: ignore[union-attr]
    draining = WorkerView(id="d", name="d", capabilities=ac.capabilities, state="draining")
    assert expected_seconds(draining, NEED) is None


def test_a_refusal_says_why() -> None:
    assert refusal([], NEED) == "no pool worker is connected"
    assert "has the model 'm'" in refusal([view("x", 1, model="x")], NEED)
    assert "largest 64" in refusal([view("t", 1, n_ctx=64)], NEED)
