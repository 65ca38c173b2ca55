"""Concurrent tasks and batch jobs: bounded, prioritised, resumable, local or on Ray.

Importing this package is cheap: SQLite, aiohttp, Starlette and Ray load only
when a batch job, the batch routes or the Ray runner are used.
"""

from __future__ import annotations

from .limits import AimdLimit, AimdSettings, FixedLimit, Limit, Outcome
from .manager import DeadlineExceeded, State, Task, TaskManager, is_overload

__all__ = [
    "AimdLimit",
    "AimdSettings",
    "DeadlineExceeded",
    "FixedLimit",
    "Limit",
    "Outcome",
    "State",
    "Task",
    "TaskManager",
    "is_overload",
]
