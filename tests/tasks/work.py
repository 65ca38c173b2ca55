"""Module-level work for the process pool (it must be importable by name)."""

from __future__ import annotations


def square(n: int) -> int:
    return n * n


def whoami() -> int:
    import os

    return os.getpid()
