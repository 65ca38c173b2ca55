"""The ``learn:`` config section and a model group's ``learn:`` option, parsed and checked.

learn:
  path: .thrifty/learn.sqlite3   # the knowledge base; default under server.data_dir
  window_s: 300                  # a near-duplicate or regenerate within this counts against the answer
  duplicate_similarity: 0.9      # cosine at which a user's new question repeats the previous one
  context_similarity: 0.6        # cosine at which a request joins an existing context
  max_contexts: 256              # contexts per owner; beyond, requests join the nearest
  max_share: 0.5                 # most of a context's traffic a candidate variant gets
  min_samples: 8                 # ratings each arm needs before promotion or rollback
  confidence: 0.95               # P(candidate better) to promote; 1 - this to roll back
  implicit_weight: 0.5           # weight of an implicit signal against a rating
  knowledge: hit                 # hit | context | false
  knowledge_similarity: 0.9      # cosine a stored question must reach before the verifier
  knowledge_verify: true         # the cache's verifier must also agree (same words, numbers, negations)
  min_ratings: 1                 # good ratings an answer needs before it is reused
  max_age_s: 2592000             # entries older than this are pruned
  capacity: 5000                 # entries per owner; the worst and oldest go first
  refresh_s: 2.0                 # how often an instance reads other instances' entries
  redis_url: redis://127.0.0.1:6379/0  # experiments, profiles and knowledge shared by every replica
  seed: 0

models:
  - name: fast
    deployments: [...]
    learn: true                  # or a mapping overriding the section's keys
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..config import (
    Config,
    ModelGroup,
    Where,
    read_bool,
    read_count,
    read_fraction,
    read_positive,
    read_positive_int,
    reject_unknown,
)

KNOWLEDGE_MODES = ("hit", "context", "off")
_KEYS = {
    "enabled",
    "path",
    "window_s",
    "duplicate_similarity",
    "context_similarity",
    "max_contexts",
    "max_share",
    "min_samples",
    "confidence",
    "implicit_weight",
    "knowledge",
    "knowledge_similarity",
    "knowledge_verify",
    "min_ratings",
    "max_age_s",
    "capacity",
    "refresh_s",
    "seed",
    "redis_url",
}


@dataclass(frozen=True)
class LearnSettings:
    """How one model group learns from its users."""

    enabled: bool = False
    path: str = ":memory:"
    window_s: float = 300.0
    duplicate_similarity: float = 0.9
    context_similarity: float = 0.6
    max_contexts: int = 256
    max_share: float = 0.5
    min_samples: int = 8
    confidence: float = 0.95
    implicit_weight: float = 0.5
    knowledge: str = "hit"
    knowledge_similarity: float = 0.9
    knowledge_verify: bool = True
    min_ratings: int = 1
    max_age_s: float = 30 * 86400.0
    capacity: int = 5000
    refresh_s: float = 2.0
    seed: int = 0
    redis_url: str = ""  # "": learned state stays in this process (the knowledge base in its file)


def parse_settings(config: Config, group: ModelGroup) -> LearnSettings:
    """The section's settings, then the group's own ``learn:`` (which turns learning on)."""
    where = config.where("learn")
    section = config.sections.get("learn") or {}
    if not isinstance(section, Mapping):
        raise where.error("must be a mapping of learning settings")
    default_path = os.path.join(config.server.data_dir, "learn.sqlite3")
    settings = _read(LearnSettings(path=default_path), section, where)
    raw = group.options.get("learn")
    if raw is None:
        return replace(settings, enabled=False)
    index = next((i for i, g in enumerate(config.models) if g.name == group.name), 0)
    gwhere = config.where("models") / index / "learn"
    if isinstance(raw, bool):
        return replace(settings, enabled=raw)
    if not isinstance(raw, Mapping):
        raise gwhere.error("must be true, false or a mapping of learning settings")
    return replace(_read(settings, raw, gwhere), enabled=read_bool(raw, "enabled", gwhere, True))


def _read(base: LearnSettings, raw: Mapping[str, Any], where: Where) -> LearnSettings:
    reject_unknown(raw, _KEYS, where)
    path = raw.get("path", base.path)
    if not isinstance(path, str) or not path:
        raise (where / "path").error(f"must be a file path, got {path!r}")
    redis_url = raw.get("redis_url", base.redis_url)
    if not isinstance(redis_url, str) or (
        redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://"))
    ):
        raise (where / "redis_url").error(f"must be a redis:// URL, got {redis_url!r}")
    knowledge = raw.get("knowledge", base.knowledge)
    if knowledge is False:
        knowledge = "off"
    if knowledge not in KNOWLEDGE_MODES:
        raise (where / "knowledge").error(f"must be one of hit, context, false; got {knowledge!r}")
    return LearnSettings(
        enabled=base.enabled,
        path=path,
        window_s=read_positive(raw, "window_s", where, base.window_s),
        duplicate_similarity=read_fraction(raw, "duplicate_similarity", where, base.duplicate_similarity),
        context_similarity=read_fraction(raw, "context_similarity", where, base.context_similarity),
        max_contexts=read_positive_int(raw, "max_contexts", where, base.max_contexts),
        max_share=read_fraction(raw, "max_share", where, base.max_share),
        min_samples=read_positive_int(raw, "min_samples", where, base.min_samples),
        confidence=read_fraction(raw, "confidence", where, base.confidence),
        implicit_weight=read_fraction(raw, "implicit_weight", where, base.implicit_weight),
        knowledge=str(knowledge),
        knowledge_similarity=read_fraction(raw, "knowledge_similarity", where, base.knowledge_similarity),
        knowledge_verify=read_bool(raw, "knowledge_verify", where, base.knowledge_verify),
        min_ratings=read_positive_int(raw, "min_ratings", where, base.min_ratings),
        max_age_s=read_positive(raw, "max_age_s", where, base.max_age_s),
        capacity=read_positive_int(raw, "capacity", where, base.capacity),
        refresh_s=read_positive(raw, "refresh_s", where, base.refresh_s),
        seed=read_count(raw, "seed", where, base.seed),
        redis_url=redis_url,
    )
