"""Learning from the people who use a model group: signals, reasons, prompt variants, good answers.

Opt-in per model group (``learn: true`` on the group, settings in the ``learn:``
section, see :mod:`thrifty.learn.settings`). ``thrifty.compose`` wraps each
such group in a :class:`~thrifty.learn.layer.LearningLayer`, the outermost
layer of the group, so it sees requests before the cache and knows the user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..backend import Backend
    from ..config import Config, ModelGroup
    from .reasons import Embed


def wrap_learning(backend: Backend, group: ModelGroup, config: Config, embed: Embed) -> Backend:
    """``backend`` wrapped in a learning layer when ``group`` opts in; else ``backend`` itself."""
    if "learn" not in group.options:
        return backend
    from .settings import parse_settings

    settings = parse_settings(config, group)
    if not settings.enabled:
        return backend
    from .layer import LearningLayer

    return LearningLayer(backend, group.name, settings, embed)


__all__ = ["wrap_learning"]
