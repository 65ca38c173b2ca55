"""The ``tasks`` config section, parsed into a frozen object.

tasks:
  concurrency: 64            # a number, or "auto" for the adaptive (AIMD) limit
  adaptive: {initial: 8, minimum: 1, maximum: 256}
  model_limits: {gpt-4o-mini: 16}
  retries: 2                 # per request, for retryable errors
  timeout: 600               # seconds per request, retries included
  batch: {max_requests: 50000}
  ray:
    address: 127.0.0.1:6379  # run batches on this Ray cluster
    resources:               # model -> Ray resources a node must have to run it
      smollm2: {local_model: 1}
      "*": {cloud_api: 1}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import (
    Config,
    Where,
    check_positive,
    check_positive_int,
    read_count,
    read_positive,
    read_positive_int,
    reject_unknown,
)
from .limits import AimdLimit, AimdSettings, Limit

DEFAULT_MAX_REQUESTS = 50_000


@dataclass(frozen=True)
class TasksConfig:
    concurrency: int = 64
    adaptive: AimdSettings | None = None  # set when concurrency is "auto"
    model_limits: Mapping[str, int] = field(default_factory=dict)
    retries: int = 2
    timeout: float | None = None
    max_requests: int = DEFAULT_MAX_REQUESTS
    ray_address: str | None = None
    ray_resources: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def limit(self) -> int | Limit:
        return AimdLimit(self.adaptive) if self.adaptive is not None else self.concurrency


def parse_tasks(config: Config) -> TasksConfig:
    raw = config.sections.get("tasks") or {}
    where = config.where("tasks")
    if not isinstance(raw, dict):
        raise where.error("must be a mapping")
    reject_unknown(
        raw, {"concurrency", "adaptive", "model_limits", "retries", "timeout", "batch", "ray"}, where
    )
    concurrency = raw.get("concurrency", 64)
    adaptive = None
    if concurrency == "auto":
        adaptive = _adaptive(raw.get("adaptive") or {}, where / "adaptive")
        concurrency = adaptive.maximum
    elif not _is_int(concurrency) or concurrency < 1:
        raise (where / "concurrency").error(f"must be a positive integer or 'auto', got {concurrency!r}")
    limits = raw.get("model_limits") or {}
    if not isinstance(limits, dict):
        raise (where / "model_limits").error("must be a mapping of model name to a positive integer")
    for model, n in limits.items():
        check_positive_int(n, where / "model_limits" / str(model))
    retries = read_count(raw, "retries", where, 2)
    timeout = None if raw.get("timeout") is None else read_positive(raw, "timeout", where, 0.0)
    batch = _mapping(raw.get("batch"), where / "batch", {"max_requests"})
    max_requests = read_positive_int(batch, "max_requests", where / "batch", DEFAULT_MAX_REQUESTS)
    ray = _mapping(raw.get("ray"), where / "ray", {"address", "resources"})
    return TasksConfig(
        concurrency=int(concurrency),
        adaptive=adaptive,
        model_limits={str(k): int(v) for k, v in limits.items()},
        retries=int(retries),
        timeout=None if timeout is None else float(timeout),
        max_requests=int(max_requests),
        ray_address=_address(ray.get("address"), where / "ray" / "address"),
        ray_resources=_resources(ray.get("resources") or {}, where / "ray" / "resources"),
    )


def _adaptive(raw: Any, where: Where) -> AimdSettings:
    if not isinstance(raw, dict):
        raise where.error("must be a mapping")
    reject_unknown(raw, {"initial", "minimum", "maximum", "backoff", "latency_tolerance", "careful"}, where)
    try:
        return AimdSettings(**raw)
    except (TypeError, ValueError) as exc:
        raise where.error(str(exc)) from exc


def _resources(raw: Any, where: Where) -> dict[str, dict[str, float]]:
    if not isinstance(raw, dict):
        raise where.error("must be a mapping of model name to {resource: amount}")
    out: dict[str, dict[str, float]] = {}
    for model, needs in raw.items():
        here = where / str(model)
        if not isinstance(needs, dict) or not needs:
            raise here.error("must be a non-empty mapping of Ray resource name to amount")
        out[str(model)] = {str(k): check_positive(v, here / str(k)) for k, v in needs.items()}
    return out


def _address(value: Any, where: Where) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise where.error(f"must be a Ray address like 127.0.0.1:6379, got {value!r}")
    return value


def _mapping(value: Any, where: Where, keys: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where.error("must be a mapping")
    reject_unknown(value, keys, where)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
