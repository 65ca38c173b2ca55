"""Which worker should take a task: a pure function of what the workers said and their load.

A worker can take a task when it is active, has the model, and the prompt plus
the answer fit its context. Among those, the one expected to finish first wins:

    service = answer tokens / tokens_per_s
    wait    = service * (tasks beyond its free slots + 1) / concurrency   (0 with a free slot)
    score   = (wait + service) * power penalty * affinity bonus

On battery a worker is asked less (x1.5; x3 below 20 %); the worker that last
served the same prompt prefix gets a bonus (x0.8): its llama.cpp prompt cache
may still hold that prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .protocol import Capabilities

DEFAULT_ANSWER_TOKENS = 128
AFFINITY_BONUS = 0.8


@dataclass(frozen=True)
class WorkerView:
    """A worker as the matcher sees it: what it can do, its state, and its load now."""

    id: str
    name: str
    capabilities: Capabilities
    state: str = "active"  # active | draining | gone
    load: int = 0


@dataclass(frozen=True)
class Need:
    """What a task asks for."""

    model: str
    prompt_tokens: int
    max_tokens: int | None = None
    prefix: str | None = None  # a digest of the prompt's stable start, for affinity


def expected_seconds(worker: WorkerView, need: Need, affinity: str | None = None) -> float | None:
    """How long ``worker`` should take to finish ``need``; None when it cannot take it."""
    caps = worker.capabilities
    model = caps.model(need.model)
    if worker.state != "active" or model is None:
        return None
    answer = need.max_tokens or DEFAULT_ANSWER_TOKENS
    if need.prompt_tokens + min(answer, DEFAULT_ANSWER_TOKENS) > model.n_ctx:
        return None
    service = answer / model.tokens_per_s
    beyond = max(0, worker.load - caps.concurrency + 1)
    wait = service * beyond / caps.concurrency
    score = wait + service
    if caps.power == "battery":
        score *= 3.0 if caps.battery is not None and caps.battery < 20 else 1.5
    if affinity is not None and affinity == worker.id:
        score *= AFFINITY_BONUS
    return score


def choose(
    workers: Iterable[WorkerView], need: Need, affinity: str | None = None, exclude: Iterable[str] = ()
) -> WorkerView | None:
    """The worker expected to finish first, or None when none can take the task."""
    skip = set(exclude)
    best: tuple[float, str, WorkerView] | None = None
    for worker in workers:
        if worker.id in skip:
            continue
        score = expected_seconds(worker, need, affinity)
        if score is not None and (best is None or (score, worker.id) < best[:2]):
            best = (score, worker.id, worker)
    return None if best is None else best[2]


def refusal(workers: Iterable[WorkerView], need: Need) -> str:
    """Why no worker can take ``need``, in words for the client."""
    active = [w for w in workers if w.state == "active"]
    if not active:
        return "no pool worker is connected"
    having = [w for w in active if w.capabilities.model(need.model) is not None]
    if not having:
        return f"no connected pool worker has the model {need.model!r}"
    largest = max(m.n_ctx for w in having for m in w.capabilities.models if m.name == need.model)
    return f"the prompt (~{need.prompt_tokens} tokens) does not fit any worker's context (largest {largest})"
