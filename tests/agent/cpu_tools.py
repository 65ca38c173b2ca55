"""Module-level tools for the sandbox tests: a worker process imports them by name."""

from __future__ import annotations

import os
import time


def spin(seconds: float = 60.0) -> int:
    """Busy in pure Python (no sleeping, no I/O) for ``seconds``."""
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
    return n


def hog(mb: int) -> int:
    return len(bytearray(mb << 20))


def die(code: int = 3) -> None:
    os._exit(code)


def text(n: int) -> str:
    return "x" * n


def pid() -> int:
    return os.getpid()
