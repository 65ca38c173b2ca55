"""The pool's wire messages (``docs/pool-protocol.md``): parsed and checked, each refusal named.

Every message a worker sends is a JSON object; anything else, a missing or
mistyped field, an unknown field, or a number out of range is an
:class:`~thrifty.errors.InvalidRequest` whose ``param`` names the field. The
parsers are pure: the routes log the reason and answer with OpenAI's error JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest

POWER_STATES = ("ac", "battery", "unknown")
MAX_MODELS = 32
MAX_LEASE = 16
MAX_CHUNKS = 4096
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")


@dataclass(frozen=True)
class ModelCapability:
    """One model a worker serves: its context size and measured speed."""

    name: str
    n_ctx: int
    tokens_per_s: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "n_ctx": self.n_ctx, "tokens_per_s": self.tokens_per_s}


@dataclass(frozen=True)
class Capabilities:
    """What a worker told the gateway it can do, when it joined."""

    models: tuple[ModelCapability, ...]
    concurrency: int = 1
    memory_mb: int | None = None
    power: str = "unknown"  # ac | battery | unknown
    battery: float | None = None  # percent, when on battery and the OS says

    def model(self, name: str) -> ModelCapability | None:
        for model in self.models:
            if model.name == name:
                return model
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "models": [m.to_json() for m in self.models],
            "concurrency": self.concurrency,
            "memory_mb": self.memory_mb,
            "power": self.power,
            "battery": self.battery,
        }


@dataclass(frozen=True)
class Result:
    """One result message for a leased task: chunks of a stream, the answer, or an error."""

    lease: str
    chunks: list[dict[str, Any]] = field(default_factory=list)
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    done: bool = False


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{where}' must be a JSON object.", param=where)
    return value


def _only(raw: dict[str, Any], known: set[str], where: str = "") -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise InvalidRequest(f"Unknown field '{name}'; expected {', '.join(sorted(known))}.", param=name)


def _int(raw: dict[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"'{key}' must be an integer from {low} to {high}, got {value!r}.", param=key)
    return value


def _number(raw: dict[str, Any], key: str, low: float, high: float, default: float | None = None) -> float:
    value = raw.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"'{key}' must be a number from {low} to {high}, got {value!r}.", param=key)
    return float(value)


def _name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidRequest(
            f"'{key}' must be 1-128 letters, digits or _.:@/- (starting with a letter or digit).", param=key
        )
    return value


def parse_capabilities(value: Any) -> Capabilities:
    raw = _object(value, "capabilities")
    _only(raw, {"models", "concurrency", "memory_mb", "power", "battery"}, "capabilities")
    models = raw.get("models")
    if not isinstance(models, list) or not 1 <= len(models) <= MAX_MODELS:
        raise InvalidRequest(
            f"'capabilities.models' must be a list of 1 to {MAX_MODELS} models.", param="capabilities.models"
        )
    parsed = []
    for i, item in enumerate(models):
        model = _object(item, f"capabilities.models[{i}]")
        _only(model, {"name", "n_ctx", "tokens_per_s"}, f"capabilities.models[{i}]")
        parsed.append(
            ModelCapability(
                name=_name(model.get("name"), "name"),
                n_ctx=_int(model, "n_ctx", 16, 10_000_000),
                tokens_per_s=_number(model, "tokens_per_s", 0.001, 1e6),
            )
        )
    power = raw.get("power", "unknown")
    if power not in POWER_STATES:
        raise InvalidRequest(f"'power' must be one of {', '.join(POWER_STATES)}.", param="power")
    memory = raw.get("memory_mb")
    battery = raw.get("battery")
    return Capabilities(
        models=tuple(parsed),
        concurrency=_int(raw, "concurrency", 1, 1024, 1),
        memory_mb=None if memory is None else _int(raw, "memory_mb", 0, 1 << 40),
        power=str(power),
        battery=None if battery is None else _number(raw, "battery", 0, 100),
    )


def parse_join(body: dict[str, Any]) -> Capabilities:
    """``POST /pool/v1/join``: ``{"capabilities": {...}}``."""
    _only(body, {"capabilities"})
    if "capabilities" not in body:
        raise InvalidRequest("'capabilities' is required.", param="capabilities")
    return parse_capabilities(body["capabilities"])


def parse_lease(body: dict[str, Any], longest: float) -> tuple[float, int, set[str]]:
    """``POST /pool/v1/lease``: ``{"wait": s, "max": n, "held": [task ids]}`` -> (wait, max, held).

    ``held`` names the tasks the worker is working on; a task leased to it
    earlier and not held (the answer to a lease call was lost) is offered again.
    """
    _only(body, {"wait", "max", "held"})
    held = body.get("held", [])
    if not isinstance(held, list) or len(held) > 1024 or not all(isinstance(t, str) for t in held):
        raise InvalidRequest("'held' must be a list of task ids.", param="held")
    wait = _number(body, "wait", 0, longest, min(longest, 20.0))
    return wait, _int(body, "max", 1, MAX_LEASE, 1), set(held)


def parse_heartbeat(body: dict[str, Any]) -> tuple[int, str | None, float | None]:
    """``POST /pool/v1/heartbeat``: ``{"active": n, "power": ..., "battery": ...}``."""
    _only(body, {"active", "power", "battery"})
    power = body.get("power")
    if power is not None and power not in POWER_STATES:
        raise InvalidRequest(f"'power' must be one of {', '.join(POWER_STATES)}.", param="power")
    battery = body.get("battery")
    return (
        _int(body, "active", 0, 1_000_000, 0),
        power,
        None if battery is None else _number(body, "battery", 0, 100),
    )


def parse_release(body: dict[str, Any]) -> bool:
    """``POST /pool/v1/release``: ``{"leave": bool}``; draining either way, gone when ``leave``."""
    _only(body, {"leave"})
    leave = body.get("leave", False)
    if not isinstance(leave, bool):
        raise InvalidRequest("'leave' must be true or false.", param="leave")
    return leave


def parse_result(body: dict[str, Any]) -> Result:
    """``POST /pool/v1/tasks/{id}/result``: the lease, then chunks, a response or an error."""
    _only(body, {"lease", "chunks", "response", "error", "done"})
    lease = body.get("lease")
    if not isinstance(lease, str) or not 8 <= len(lease) <= 64:
        raise InvalidRequest("'lease' must be the lease id this task was given.", param="lease")
    chunks = body.get("chunks", [])
    if not isinstance(chunks, list) or len(chunks) > MAX_CHUNKS:
        raise InvalidRequest(f"'chunks' must be a list of at most {MAX_CHUNKS} objects.", param="chunks")
    for i, chunk in enumerate(chunks):
        _object(chunk, f"chunks[{i}]")
    response = body.get("response")
    if response is not None:
        response = _object(response, "response")
        choices = response.get("choices")
        if not isinstance(choices, list) or not choices:
            raise InvalidRequest("'response.choices' must be a non-empty list.", param="response.choices")
    error = body.get("error")
    if error is not None:
        error = _object(error, "error")
        if not isinstance(error.get("message"), str):
            raise InvalidRequest("'error.message' must be a string.", param="error.message")
    done = body.get("done", False)
    if not isinstance(done, bool):
        raise InvalidRequest("'done' must be true or false.", param="done")
    if response is not None and error is not None:
        raise InvalidRequest("Send either 'response' or 'error', not both.", param="error")
    if (response is not None or error is not None) and not done:
        raise InvalidRequest("A 'response' or an 'error' ends the task: set 'done' to true.", param="done")
    return Result(lease=lease, chunks=chunks, response=response, error=error, done=done)
