from __future__ import annotations

from pathlib import Path

import pytest

from thrifty.config import Config

from .helpers import make_config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)
