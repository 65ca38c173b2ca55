"""What a router decided for one request: the trace's typed ``route`` field.

The class lives with the trace (:class:`thrifty.types.RouteDecision`) so that
the observer and the headers read it without importing the router.
"""

from __future__ import annotations

from ..types import RouteDecision as Decision

__all__ = ["Decision"]
