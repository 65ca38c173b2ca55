from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def routing_data(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """General/analysis questions come from the small copy here, never from outside the checkout."""
    monkeypatch.setenv("THRIFTY_ROUTING_DATA", str(DATA))
    yield DATA
