"""The knowledge base: admission, validation before reuse, pruning, owners, sharing through SQLite."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from thrifty.learn.knowledge import KnowledgeBase
from thrifty.learn.settings import LearnSettings

from .conftest import words


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def opened(settings: LearnSettings, clock: Any = None) -> KnowledgeBase:
    kb = KnowledgeBase(settings, clock or Clock())
    kb.open()
    return kb


def admit(kb: KnowledgeBase, owner: str, question: str, answer: str, rid: str = "r1") -> None:
    _, write = kb.admit(owner, question, answer, words([question])[0], response_id=rid)
    write()


def find(kb: KnowledgeBase, owner: str, question: str) -> str | None:
    match = kb.lookup(owner, question, words([question])[0])
    return None if match is None else match.entry.answer


def test_a_good_answer_is_reused_for_the_same_question_only_for_its_owner(settings: LearnSettings) -> None:
    kb = opened(settings)
    admit(kb, "alice", "How do I reset my password?", "Settings > Security > Reset.")
    assert find(kb, "alice", "How do I reset my password?") == "Settings > Security > Reset."
    assert find(kb, "alice", "how do i reset my password") == "Settings > Security > Reset."
    assert find(kb, "bob", "How do I reset my password?") is None


def test_the_verifier_rejects_a_near_miss_that_changes_the_meaning(settings: LearnSettings) -> None:
    kb = opened(dataclasses.replace(settings, knowledge_similarity=0.5))
    admit(kb, "k", "Track order 48213", "Order 48213 ships Monday.")
    assert find(kb, "k", "Track order 48231") is None
    assert kb.rejected == 1


def test_an_answer_needs_its_minimum_ratings_before_reuse(settings: LearnSettings) -> None:
    kb = opened(dataclasses.replace(settings, min_ratings=2))
    admit(kb, "k", "What is DNS?", "The internet's phone book.")
    assert find(kb, "k", "What is DNS?") is None
    admit(kb, "k", "What is DNS?", "The internet's phone book.", rid="r2")
    assert find(kb, "k", "What is DNS?") == "The internet's phone book."


def test_a_later_bad_rating_removes_the_answer(settings: LearnSettings) -> None:
    kb = opened(settings)
    admit(kb, "k", "What is DNS?", "A kind of cheese.", rid="r7")
    assert kb.contradict("k", response_id="nope") is None
    write = kb.contradict("k", response_id="r7")
    assert write is not None
    write()
    assert find(kb, "k", "What is DNS?") is None
    fresh = opened(settings)
    fresh.apply(fresh.changes())
    assert find(fresh, "k", "What is DNS?") is None  # the removal reached the file too


def test_pruning_by_age_and_by_capacity(settings: LearnSettings) -> None:
    clock = Clock()
    kb = opened(dataclasses.replace(settings, max_age_s=100.0, capacity=2), clock)
    admit(kb, "k", "old question here", "old")
    clock.now += 50
    admit(kb, "k", "second question here", "two")
    admit(kb, "k", "third question here", "three")
    admit(kb, "k", "third question here", "three", rid="r2")  # rated twice: the best
    for write in kb.prune():  # capacity 2: the lowest score, then the oldest, goes
        write()
    assert find(kb, "k", "old question here") is None
    assert find(kb, "k", "third question here") == "three"
    clock.now += 120
    for write in kb.prune():
        write()
    assert kb.size("k") == 0


def test_two_instances_share_what_they_learn_through_one_file(settings: LearnSettings) -> None:
    first, second = opened(settings), opened(settings)
    admit(first, "k", "What port does HTTPS use?", "443.")
    assert find(second, "k", "What port does HTTPS use?") is None
    second.apply(second.changes())
    assert find(second, "k", "What port does HTTPS use?") == "443."
    second.apply(second.changes())  # nothing new: nothing changes
    assert second.size() == 1


def test_an_unusable_file_leaves_the_base_in_memory_and_degraded(
    tmp_path: Path, settings: LearnSettings
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    kb = opened(dataclasses.replace(settings, path=str(blocker / "learn.sqlite3")))
    assert kb.degraded() and "cannot be opened" in kb.degraded()[0]
    admit(kb, "k", "What is DNS?", "Names to addresses.")
    assert find(kb, "k", "What is DNS?") == "Names to addresses."


def test_a_damaged_file_is_set_aside(tmp_path: Path, settings: LearnSettings) -> None:
    (tmp_path / "learn.sqlite3").write_bytes(b"not a database" * 100)
    kb = opened(settings)
    assert kb.db is not None and not kb.degraded()
    assert list(tmp_path.glob("learn.sqlite3.corrupt-*"))


def test_writes_from_worker_threads_do_not_collide(settings: LearnSettings) -> None:
    kb = opened(settings)
    writes = [
        kb.admit(
            "k",
            f"question number {i}",
            f"answer {i}",
            words([f"question number {i}"])[0],
            response_id=f"r{i}",
        )[1]
        for i in range(40)
    ]

    async def run() -> None:
        await asyncio.gather(*(asyncio.to_thread(w) for w in writes))

    asyncio.run(run())
    other = opened(settings)
    other.apply(other.changes())
    assert other.size("k") == 40
