"""Reading the trace annotations other layers leave (``trace.note``).

Keys read, all optional:

- ``cache``: ``hit-exact``, ``hit-semantic 0.93``, ``miss``; anything else
  (``bypass``, ``off``) means no lookup counted. ``cache_level`` (``l1``, ``disk``,
  ``redis``...) refines the hit level when present.
- ``tier``: the route tier that served the request; else read from ``route``
  (``tier=fast`` or ``model=fast`` pairs, or its words: ``rules fast 0.31``
  gives ``fast``, a single word is the tier).
- ``escalations``: a count; else ``escalations=N`` inside ``route``.
- ``fallback``: present and not ``0``/``no`` means a fallback served it.
"""

from __future__ import annotations

import re

_SPLIT = re.compile(r"[\s;,]+")


def _parts(value: str) -> tuple[dict[str, str], list[str]]:
    pairs: dict[str, str] = {}
    words: list[str] = []
    for token in _SPLIT.split(value.strip()):
        if not token:
            continue
        key, eq, val = token.partition("=")
        if eq:
            pairs[key.lower()] = val
        else:
            words.append(token)
    return pairs, words


def cache_outcome(ann: dict[str, str]) -> tuple[str, str]:
    """("hit", level), ("miss", "") or ("", "") when no cache lookup happened."""
    value = ann.get("cache")
    if not value:
        return "", ""
    head = _SPLIT.split(value.strip().lower(), maxsplit=1)[0]
    if head.startswith("hit"):
        level = ann.get("cache_level") or head[3:].lstrip("-_:") or "hit"
        return "hit", level
    if head.startswith("miss"):
        return "miss", ""
    return "", ""


def route_tier(ann: dict[str, str]) -> str:
    tier = ann.get("tier")
    if tier:
        return tier
    route = ann.get("route")
    if not route:
        return ""
    pairs, words = _parts(route)
    for key in ("tier", "model", "chosen"):
        if pairs.get(key):
            return pairs[key]
    words = [w for w in words if not _is_number(w)]
    if len(words) >= 2:
        return words[1]
    return words[0] if words else ""


def escalations(ann: dict[str, str]) -> int:
    raw = ann.get("escalations")
    if raw is None:
        route = ann.get("route")
        raw = _parts(route)[0].get("escalations") if route else None
    try:
        return max(0, int(raw)) if raw is not None else 0
    except ValueError:
        return 0


def fell_back(ann: dict[str, str]) -> bool:
    value = ann.get("fallback") or ""
    return value.lower() not in ("", "0", "no", "false", "none")


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


Parsed = tuple[str, str, str, int, bool]  # cache result, cache level, tier, escalations, fell back
_NOTHING: Parsed = ("", "", "", 0, False)
_memo: dict[tuple[str | None, ...], Parsed] = {}


def parse(ann: dict[str, str]) -> Parsed:
    """Everything the observer reads from annotations, memoized on their values."""
    if not ann:
        return _NOTHING
    get = ann.get
    key = (get("cache"), get("cache_level"), get("tier"), get("route"), get("escalations"), get("fallback"))
    found = _memo.get(key)
    if found is None:
        result, level = cache_outcome(ann)
        found = (result, level, route_tier(ann), escalations(ann), fell_back(ann))
        if len(_memo) >= 4096:
            _memo.clear()
        _memo[key] = found
    return found
