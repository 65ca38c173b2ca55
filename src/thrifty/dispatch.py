"""The one scheduling loop: start ready work, in an order's choice, while slots are free.

The agent's executor and the task manager both schedule through a
:class:`Dispatcher`. What differs between them is only the *order* among the
ready items: the executor's is the longest estimated remaining path through the
plan (:class:`thrifty.agent.ranking.Ranking`), the task manager's is priority
then age under per-model limits (:class:`thrifty.tasks.manager.ModelQueues`).
Dispatch happens in the completion path of the work that just ended: no
polling, no background loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K")
K_co = TypeVar("K_co", covariant=True)


class Order(Protocol[K_co]):
    """Which ready item starts next."""

    def pop(self, free: int | None) -> K_co | None:
        """The next item to start (removed from the ready set), or None if none may start now.

        ``free``: slots open under the limit (None: no limit). An order may use
        it to decide how hard to think: with more slots than ready items, every
        ready item starts whatever the order.
        """
        ...


class Dispatcher(Generic[K]):
    """Counts running work against a limit and starts what the order picks.

    ``limit`` is read at every dispatch (an adaptive limit may move; None: no
    limit). ``start`` is called once per item picked; it must arrange for
    :meth:`release` to be called when that item's slot frees (even if it fails
    at once).
    """

    __slots__ = ("running", "_order", "_start", "_limit")

    def __init__(self, order: Order[K], start: Callable[[K], None], limit: Callable[[], int | None]) -> None:
        self.running = 0
        self._order = order
        self._start = start
        self._limit = limit

    def pump(self) -> None:
        """Start ready items until the limit is reached or nothing more may start."""
        while True:
            limit = self._limit()
            free = None if limit is None else limit - self.running
            if free is not None and free <= 0:
                return
            item = self._order.pop(free)
            if item is None:
                return
            self.running += 1
            self._start(item)

    def release(self) -> None:
        """One item's slot is free (call :meth:`pump` to use it)."""
        self.running -= 1
