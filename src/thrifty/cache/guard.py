"""Holding the semantic cache to a maximum error rate by auditing a share of its hits.

The first ``warmup`` would-be semantic hits, then each with probability
``audit_share``, are not served from the cache: the request goes upstream anyway and the fresh answer is compared
with the cached one (:func:`answers_agree`). Each audit is a sample of the
error rate of the hits being served, and moves the thresholds:

* **locally**: a disagreement at similarity ``s`` on a cached question raises
  that question's own threshold above ``s`` (its neighbourhood of paraphrases
  is narrower than the rest), so the same near-miss is not served again;
* **globally**: when the audits since the last change show, with 95%
  confidence (Wilson bounds), an error rate above ``max_error_rate``, the
  threshold every question starts from rises by ``step``; when they show one
  below, after at least ``min_audits`` audits, it falls by ``step``, never
  under ``floor``.

So the cache serves as many paraphrases as the error budget allows, and the
budget holds even when the embedding model's scores drift for some topic.
Audits cost upstream calls: ``audit_share`` of the semantic hits. Everything is
in memory, per model group; a restart begins again from the configured threshold.
"""

from __future__ import annotations

import math
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass

from .verify import verify

_Z = 1.96  # 95% two-sided
_LOCAL_ENTRIES = 100_000  # per-question thresholds kept (least recently tightened dropped)


@dataclass(frozen=True)
class GuardSettings:
    """``max_error_rate`` None turns auditing off; thresholds then stay as configured."""

    max_error_rate: float | None = None
    audit_share: float = 0.05
    step: float = 0.01
    floor: float = 0.75
    ceiling: float = 0.995
    min_audits: int = 30
    warmup: int = 30  # the first would-be hits, all audited: nothing is served on an untested threshold


def wilson(errors: int, trials: int) -> tuple[float, float]:
    """95% Wilson score interval of an error rate."""
    if trials == 0:
        return 0.0, 1.0
    p = errors / trials
    centre = (p + _Z * _Z / (2 * trials)) / (1 + _Z * _Z / trials)
    half = _Z * math.sqrt(p * (1 - p) / trials + _Z * _Z / (4 * trials * trials)) / (1 + _Z * _Z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def answers_agree(cached: str, fresh: str) -> bool:
    """Same answer: equal after case and spacing, or the same content words in order."""
    return _normal(cached) == _normal(fresh) or verify(fresh, cached).ok


class ThresholdGuard:
    """Per-question and global similarity thresholds, moved by audit outcomes. Thread-safe."""

    def __init__(self, base: float, settings: GuardSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.base = base
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._local: OrderedDict[str, float] = OrderedDict()
        self.audits = self.errors = 0  # since the global threshold last moved
        self.total_audits = self.total_errors = 0

    @property
    def active(self) -> bool:
        return self.settings.max_error_rate is not None

    def lowest(self) -> float:
        """The lowest threshold any question has now (what the index search may stop at)."""
        return self.base

    def threshold(self, key: str) -> float:
        """The similarity a match on cached question ``key`` must reach."""
        with self._lock:
            return max(self.base, self._local.get(key, 0.0))

    def audit(self) -> bool:
        """Whether this would-be hit is to be checked against a fresh upstream answer."""
        if not self.active:
            return False
        with self._lock:
            if self.total_audits < self.settings.warmup:
                return True
        return self._rng.random() < self.settings.audit_share

    def record(self, key: str, similarity: float, agreed: bool) -> None:
        """One audit's outcome for a match on ``key`` at ``similarity``."""
        limit = self.settings.max_error_rate
        if limit is None:
            return
        s = self.settings
        with self._lock:
            self.audits += 1
            self.total_audits += 1
            if not agreed:
                self.errors += 1
                self.total_errors += 1
                self._local[key] = min(s.ceiling, max(self._local.get(key, 0.0), similarity + s.step))
                self._local.move_to_end(key)
                while len(self._local) > _LOCAL_ENTRIES:
                    self._local.popitem(last=False)
            low, high = wilson(self.errors, self.audits)
            if low > limit and self.base < s.ceiling:
                self.base = min(s.ceiling, self.base + s.step)
                self.audits = self.errors = 0
            elif self.audits >= s.min_audits and high < limit and self.base > s.floor:
                self.base = max(s.floor, self.base - s.step)
                self.audits = self.errors = 0

    def stats(self) -> dict[str, float | int]:
        with self._lock:
            return {
                "threshold": round(self.base, 4),
                "audits": self.total_audits,
                "audit_errors": self.total_errors,
                "tightened_questions": len(self._local),
            }
