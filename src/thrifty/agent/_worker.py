"""The sandbox worker's main loop: ``python -m thrifty.agent._worker`` (started by :mod:`.sandbox`).

It reads calls from stdin and writes results to what was stdout; anything a
tool prints goes to stderr instead, so it cannot corrupt the replies. Each
message is an 8-byte length and a pickle. A call is ``(target, args, memory,
result_bytes)``; a reply is ``(status, value)``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

try:
    import resource
except ImportError:  # not on Windows: no memory budget there, only the time limit
    resource = None  # type: ignore[assignment]


from .sandbox import ERROR, HEADER, MEMORY, OK, TOO_BIG


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops us
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # print() in a tool lands on stderr
    sys.stdout = sys.stderr
    calls = sys.stdin.buffer
    functions: dict[str, Callable[..., Any]] = {}
    while True:
        message = _read(calls)
        if message is None:
            return
        reply = run(functions, message)
        replies.write(len(reply).to_bytes(HEADER, "big") + reply)


def _read(stream: BinaryIO) -> bytes | None:
    header = stream.read(HEADER)
    if len(header) < HEADER:
        return None  # the parent closed the pipe: time to go
    size = int.from_bytes(header, "big")
    body = stream.read(size)
    return body if len(body) == size else None


def run(functions: dict[str, Callable[..., Any]], message: bytes) -> bytes:
    """One call, as the bytes of its reply."""
    try:
        target, args, memory, result_bytes = pickle.loads(message)
        fn = _function(functions, target)
        with _address_space(memory):
            value = fn(**args)
            out = pickle.dumps((OK, value))
        del value
        if len(out) > result_bytes:
            return pickle.dumps((TOO_BIG, len(out)))
        return out
    except MemoryError:
        return pickle.dumps((MEMORY, None))
    except Exception as exc:
        return _error(exc)


def _function(
    functions: dict[str, Callable[..., Any]], target: str | Callable[..., Any]
) -> Callable[..., Any]:
    if not isinstance(target, str):
        return target
    fn = functions.get(target)
    if fn is None:
        module, _, attr = target.partition(":")
        fn = functions[target] = getattr(importlib.import_module(module), attr)
    return fn


def _error(exc: Exception) -> bytes:
    """The tool's exception as it was, or as a ToolError carrying its text if it cannot travel."""
    try:
        out = pickle.dumps((ERROR, exc))
        pickle.loads(out)
        return out
    except Exception:
        from .tools import ToolError

        return pickle.dumps((ERROR, ToolError(f"{type(exc).__name__}: {exc}")))


@contextlib.contextmanager
def _address_space(limit: int) -> Iterator[None]:
    """Cap the worker's address space while a call runs, and lift the cap after."""
    if resource is None or limit <= 0:
        yield
        return
    saved = resource.getrlimit(resource.RLIMIT_AS)
    hard = saved[1]
    resource.setrlimit(
        resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard)
    )
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, saved)


if __name__ == "__main__":
    main()
