"""Tools: typed signatures, loaded by import path on first use.

A :class:`ToolSpec` names a function by import path (``"pkg.mod:fn"``) or holds
it directly. The registry imports the module the first time the tool runs, or
earlier when a *preload trigger* fires: a regex matching the question, another
tool being planned (``preload_with``), or the planner merely naming the tool.
Built-in tools register through the same door as user tools.
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ThriftyError
from . import schema as jsonschema
from .plan import PlanError

Kind = Literal["async", "thread", "process"]
KINDS: tuple[Kind, ...] = ("async", "thread", "process")
Estimator = Callable[[Mapping[str, Any]], float | None]


class ToolError(ThriftyError):
    """A tool failed; ``retryable`` says whether running it again may help."""

    type = "tool_error"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What tools that ask for it (``context=True``) receive as their first argument."""

    workspace: Path = field(default_factory=Path.cwd)
    backend: Any = None  # anything with ``async complete(ChatRequest) -> ChatResponse``
    model: str = ""
    http_allow: tuple[str, ...] = ()
    http_timeout_s: float = 10.0
    max_bytes: int = 256_000


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """How to call one tool and how to describe it to the planner.

    ``kind``: ``async`` (a coroutine function; a plain function given as
    ``async`` runs in a thread, never on the event loop), ``thread`` (blocking
    I/O; its timeout ends the task, but a thread cannot be stopped, so it must
    end by itself) or ``process`` (CPU work: runs in a :class:`~.sandbox.Sandbox`
    worker that is killed at the timeout, with ``memory_mb`` of address space;
    needs an import path or a picklable module-level function, and no context).

    Duration estimates drive critical-path priority under a cap. A task's own
    estimate comes first (the plan's ``est_s``, else ``estimate(args)``: seconds
    this call should take given its arguments as planned, references not yet
    resolved, or None); tasks without one use the tool's learned average,
    seeded with ``est_s`` until real runs are observed.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    target: str | Callable[..., Any]
    kind: Kind = "async"
    context: bool = False
    timeout_s: float = 30.0
    retries: int = 1
    est_s: float = 0.5
    estimate: Estimator | None = None
    memory_mb: int | None = None
    examples: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    preload_with: tuple[str, ...] = ()

    @property
    def param_names(self) -> list[str]:
        return list((self.parameters.get("properties") or {}).keys())

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }

    def signature(self) -> str:
        props: Mapping[str, Any] = self.parameters.get("properties") or {}
        required = set(self.parameters.get("required") or ())
        parts = []
        for name, prop in props.items():
            t = prop.get("type", "any")
            t = t if isinstance(t, str) else "|".join(t)
            parts.append(f"{name}: {t}" + ("" if name in required else " = optional"))
        return f"{self.name}({', '.join(parts)})"


class ToolRegistry:
    """Tools by name; each tool's code is imported on first use or on a trigger."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        self._loaded: dict[str, Callable[..., Any]] = {}
        self._lock = threading.Lock()
        for spec in specs:
            self.register(spec)

    def register(self, spec: ToolSpec) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", spec.name):
            raise ValueError(f"tool name {spec.name!r} must be an identifier")
        if spec.kind not in KINDS:
            raise ValueError(f"tool {spec.name!r}: kind must be one of {', '.join(KINDS)}, not {spec.kind!r}")
        if spec.kind == "process" and spec.context:
            raise ValueError(f"tool {spec.name!r}: process tools cannot take the context")
        if spec.kind == "process" and not isinstance(spec.target, str):
            try:
                pickle.dumps(spec.target)
            except (pickle.PicklingError, TypeError, AttributeError):
                raise ValueError(
                    f"tool {spec.name!r}: a process tool needs an import path or a module-level function"
                ) from None
        self._specs[spec.name] = spec
        self._loaded.pop(spec.name, None)
        if not isinstance(spec.target, str):
            self._loaded[spec.name] = spec.target  # nothing to import

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def names(self) -> list[str]:
        return list(self._specs)

    def spec(self, name: str) -> ToolSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(self._specs) or "none"
            raise PlanError(f"unknown tool {name!r} (known: {known})", param="tool") from None

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def load(self, name: str) -> Callable[..., Any]:
        """The tool's function, importing its module if this is the first use."""
        fn = self._loaded.get(name)
        if fn is not None:
            return fn
        spec = self.spec(name)
        with self._lock:
            fn = self._loaded.get(name)
            if fn is None:
                fn = _import(spec.target) if isinstance(spec.target, str) else spec.target
                self._loaded[name] = fn
        return fn

    async def preload(self, names: Iterable[str]) -> None:
        """Import the named tools (and their ``preload_with`` companions) off the loop."""
        todo = self._closure(names)
        todo = [n for n in todo if n not in self._loaded]
        if todo:
            await asyncio.to_thread(lambda: [self.load(n) for n in todo])

    def triggered_by(self, text: str) -> list[str]:
        """Tools whose trigger patterns match ``text`` (e.g. the question)."""
        return [s.name for s in self._specs.values() if any(re.search(p, text, re.I) for p in s.triggers)]

    def _closure(self, names: Iterable[str]) -> list[str]:
        out: list[str] = []
        stack = [n for n in names if n in self._specs]
        while stack:
            name = stack.pop()
            if name in out:
                continue
            out.append(name)
            stack.extend(s.name for s in self._specs.values() if name in s.preload_with)
        return out

    def bind(self, name: str, args: list[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Positional and keyword arguments as one dict named by the tool's parameters."""
        spec = self.spec(name)
        params = spec.param_names
        if len(args) > len(params):
            raise PlanError(f"{name}() takes {len(params)} arguments, {len(args)} given", param="args")
        bound = dict(zip(params, args, strict=False))
        for key, value in kwargs.items():
            if key in bound:
                raise PlanError(f"{name}() got argument {key!r} twice", param="args")
            bound[key] = value
        return bound

    def check(self, name: str, args: Mapping[str, Any], *, pending: Iterable[str] = ()) -> None:
        """PlanError unless ``args`` fit the tool's schema; ``pending`` args are not known yet."""
        spec = self.spec(name)
        skip = set(pending)
        known = {k: v for k, v in args.items() if k not in skip}
        schema = dict(spec.parameters)
        if skip:
            schema["required"] = [r for r in schema.get("required") or () if r not in skip]
        problems = jsonschema.errors(known, schema)
        if problems:
            raise PlanError(f"{name}(): " + "; ".join(problems), param="args")

    def prepare(self, name: str, args: Mapping[str, Any], resolved: Iterable[str]) -> dict[str, Any]:
        """Arguments with the ``resolved`` ones (just filled in from references)
        coerced to the schema and checked; the others were checked with the plan."""
        spec = self.spec(name)
        props: Mapping[str, Any] = spec.parameters.get("properties") or {}
        ready = dict(args)
        problems: list[str] = []
        for key in resolved:
            if key in props:
                ready[key] = jsonschema.coerce(ready[key], props[key])
                problems += jsonschema.errors(ready[key], props[key], key)
        if problems:
            raise ToolError(f"{name}(): " + "; ".join(problems))
        return ready

    def planner_text(self) -> str:
        """The numbered tool list for the plan prompt."""
        lines = []
        for i, spec in enumerate(self._specs.values(), 1):
            lines.append(f"{i}. {spec.signature()}: {spec.description}")
            lines.extend(f"   e.g. {example}" for example in spec.examples)
        return "\n".join(lines)


def _import(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"tool target {target!r} must look like 'package.module:function'")
    fn = getattr(importlib.import_module(module_name), attr)
    if not callable(fn):
        raise TypeError(f"tool target {target!r} is not callable")
    return fn  # type: ignore[no-any-return]
