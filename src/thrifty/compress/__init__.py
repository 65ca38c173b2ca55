"""Fewer prompt tokens: redundancy removed, history condensed, context cut to the question.

``wrap_compress(backend, group, config, embedder)`` puts a model group behind
the :class:`~thrifty.compress.layer.CompressLayer` (``thrifty.compose`` does,
above the response cache). Modes and settings: ``settings``; the passes:
``minimal`` (lossless), ``history`` (near-duplicates, summary of old turns),
``extract`` (query-aware, aggressive), run in order by ``engine``; ``layout``
keeps prompt prefixes stable for provider caches; ``tokens`` counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..backend import Backend
from ..config import Config, ModelGroup
from .settings import MODES, CompressSettings, Knobs, parse_settings

if TYPE_CHECKING:
    from ..embeddings import EmbeddingModel

__all__ = ["MODES", "CompressSettings", "Knobs", "parse_settings", "wrap_compress"]


def wrap_compress(
    backend: Backend,
    group: ModelGroup,
    config: Config,
    embedder: EmbeddingModel | None = None,
    groups: Callable[[str], Backend | None] | None = None,
) -> Backend:
    """``backend`` behind the compressor, or itself when the group never compresses.

    ``groups`` finds another model group by name once the stack is built (the ``summary_model``).
    """
    settings = parse_settings(config, group)
    if not settings.enabled:
        return backend
    from .layer import CompressLayer

    return CompressLayer(backend, group.name, settings, embedder, groups)
