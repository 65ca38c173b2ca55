"""``thrifty bench``: compare models, providers and routers on generated, automatically graded tasks.

Five domains (``general``, ``quantum``, ``maze``, ``sorting``, ``image``), each in
four task types (``generation``, ``solving``, ``analysis``, ``optimisation``);
one module per domain holds its generator and its grader, documented there.
``runner`` sends the tasks through the task manager (or Ray) resumably,
``report`` writes markdown, CSV and PNG. Importing this package is cheap.
"""

from __future__ import annotations

from .task import DOMAINS, TYPES, BenchTask, Grade

__all__ = ["DOMAINS", "TYPES", "BenchTask", "Grade"]
