"""Shared helpers for the learning layer's tests: a toy embedding and settings."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import pytest

from thrifty.learn.settings import LearnSettings


def words(texts: Sequence[str]) -> Any:
    """A toy embedding: hashed lower-case words, unit length (texts sharing words are near)."""
    import numpy as np

    out = np.zeros((len(texts), 384), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().replace("?", " ").replace(".", " ").replace(",", " ").split():
            out[row, zlib.crc32(word.encode()) % 384] += 1.0
    normed: Any = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    return normed


@pytest.fixture
def settings(tmp_path: Any) -> LearnSettings:
    return LearnSettings(enabled=True, path=str(tmp_path / "learn.sqlite3"), min_samples=4, refresh_s=3600.0)
