"""The one scheduling loop shared by the agent's executor and the task manager."""

from __future__ import annotations

from thrifty.dispatch import Dispatcher


class Fifo:
    """An order that hands out items first in, first out, and records the ``free`` it was offered."""

    def __init__(self, items: list[str]) -> None:
        self.items = items
        self.offered: list[int | None] = []

    def pop(self, free: int | None) -> str | None:
        self.offered.append(free)
        return self.items.pop(0) if self.items else None


def test_starts_up_to_the_limit_and_one_more_per_release() -> None:
    order, started = Fifo(["a", "b", "c", "d"]), list[str]()
    slots = Dispatcher(order, started.append, lambda: 2)
    slots.pump()
    assert started == ["a", "b"] and slots.running == 2
    assert order.offered == [2, 1]  # the order is told how many slots are open
    slots.pump()  # nothing free: the order is not even asked
    assert started == ["a", "b"] and order.offered == [2, 1]
    slots.release()
    slots.pump()
    assert started == ["a", "b", "c"] and slots.running == 2


def test_no_limit_starts_everything_ready_and_a_limit_read_at_each_pump() -> None:
    limit: list[int | None] = [None]
    order, started = Fifo(["a", "b", "c"]), list[str]()
    slots = Dispatcher(order, started.append, lambda: limit[0])
    slots.pump()
    assert started == ["a", "b", "c"] and order.offered == [None, None, None, None]
    limit[0] = 1  # an adaptive limit that shrank below what is running: nothing new starts
    order.items.append("d")
    slots.pump()
    assert started == ["a", "b", "c"]
    for _ in range(3):
        slots.release()
    slots.pump()
    assert started == ["a", "b", "c", "d"] and slots.running == 1


def test_a_start_that_fails_at_once_frees_its_slot_and_the_loop_goes_on() -> None:
    order, started = Fifo(["expired", "a", "b"]), list[str]()

    def start(item: str) -> None:
        if item == "expired":
            slots.release()  # e.g. a task whose deadline passed while it queued
            return
        started.append(item)

    slots = Dispatcher(order, start, lambda: 2)
    slots.pump()
    assert started == ["a", "b"] and slots.running == 2
