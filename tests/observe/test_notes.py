"""Reading other layers' trace annotations."""

from __future__ import annotations

import pytest

from thrifty.observe import notes


@pytest.mark.parametrize(
    ("ann", "want"),
    [
        ({}, ("", "")),
        ({"cache": "miss"}, ("miss", "")),
        ({"cache": "hit-exact"}, ("hit", "exact")),
        ({"cache": "hit-semantic 0.93"}, ("hit", "semantic")),
        ({"cache": "hit-exact", "cache_level": "redis"}, ("hit", "redis")),
        ({"cache": "bypass"}, ("", "")),
    ],
)
def test_cache_outcome(ann: dict[str, str], want: tuple[str, str]) -> None:
    assert notes.cache_outcome(ann) == want


@pytest.mark.parametrize(
    ("ann", "want"),
    [
        ({}, ""),
        ({"tier": "balanced", "route": "rules fast"}, "balanced"),
        ({"route": "policy=rules; tier=fast; score=0.2"}, "fast"),
        ({"route": "cascade model=smart escalations=1"}, "smart"),
        ({"route": "rules fast 0.31 0"}, "fast"),
        ({"route": "fast"}, "fast"),
    ],
)
def test_route_tier(ann: dict[str, str], want: str) -> None:
    assert notes.route_tier(ann) == want


def test_escalations_and_fallbacks() -> None:
    assert notes.escalations({"route": "cascade smart escalations=2"}) == 2
    assert notes.escalations({"escalations": "x"}) == 0
    assert notes.fell_back({"fallback": "smart"}) and not notes.fell_back({"fallback": "no"})
