"""Model routing: send each request to the cheapest model that will do.

``build_routers(config, groups)`` turns the ``routing:`` config section into
router backends; ``explain(text, config)`` shows a decision without calling a
model; ``eval_main(argv)`` runs the offline evaluation (``thrifty route eval``).
"""

from __future__ import annotations

from .build import build_routers, explain
from .decision import Decision
from .router import Router
from .settings import RouterSpec, RoutingConfig, Tier, parse_routing


def eval_main(argv: list[str]) -> int:
    """``thrifty route eval``: fit on the train files, report on the test files."""
    from .evaluation.cli import main  # deferred: numpy and the datasets load only here

    return main(argv)


def fit_main(argv: list[str]) -> int:
    """``thrifty route fit``: fit a learned router on an outcome file, λ by cross-validation."""
    from .evaluation.owndata import fit_main as main

    return main(argv)


__all__ = [
    "Decision",
    "Router",
    "RouterSpec",
    "RoutingConfig",
    "Tier",
    "build_routers",
    "eval_main",
    "explain",
    "fit_main",
    "parse_routing",
]
