"""Per-request cache controls, from the ``thrifty`` body field or the ``x-thrifty-cache`` header.

Body: ``{"thrifty": {"cache": {"no_cache": true, "no_store": true, "ttl": 60,
"namespace": "x", "semantic": true}}}`` (or ``"cache": false`` for neither).
Header: ``x-thrifty-cache: no-cache, ttl=60, namespace=x`` -- comma-separated
flags (``no-cache``, ``no-store``, ``semantic``, ``no-semantic``) and
``key=value`` pairs (``ttl``, ``namespace``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest

PARAM = "x-thrifty-cache"
DEFAULT_NAMESPACE = "default"
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_FLAGS = {
    "no-cache": "no_cache",
    "no-store": "no_store",
    "semantic": "semantic",
    "no-semantic": "no_semantic",
}


@dataclass(frozen=True)
class RequestCache:
    """What one request asks of the cache."""

    no_cache: bool = False  # do not answer from the cache
    no_store: bool = False  # do not keep this answer
    ttl: float | None = None  # caps every level's TTL for this answer
    namespace: str = DEFAULT_NAMESPACE
    semantic: bool | None = None  # None: the model group's setting


NO_OPTIONS = RequestCache()


def request_cache(options: Mapping[str, Any]) -> RequestCache:
    """Parse ``options["cache"]``; raise InvalidRequest naming the problem."""
    raw = options.get("cache")
    if raw is None:
        return NO_OPTIONS
    if isinstance(raw, bool):
        return NO_OPTIONS if raw else RequestCache(no_cache=True, no_store=True)
    if isinstance(raw, str):
        return _from_header(raw)
    if isinstance(raw, Mapping):
        return _from_body(raw)
    raise InvalidRequest("'thrifty.cache' must be an object, a boolean or a header string.", param=PARAM)


def _from_header(raw: str) -> RequestCache:
    values: dict[str, Any] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, eq, value = (s.strip() for s in part.partition("="))
        name = name.lower()
        if not eq:
            if name not in _FLAGS:
                raise InvalidRequest(
                    f"x-thrifty-cache: unknown directive {name!r}; expected no-cache, no-store, "
                    "semantic, no-semantic, ttl=<seconds> or namespace=<name>.",
                    param=PARAM,
                )
            values[_FLAGS[name]] = True
        elif name == "ttl":
            values["ttl"] = _ttl_text(value)
        elif name == "namespace":
            values["namespace"] = value
        else:
            raise InvalidRequest(
                f"x-thrifty-cache: unknown setting {name!r}; expected ttl=<seconds> or namespace=<name>.",
                param=PARAM,
            )
    if values.pop("no_semantic", False):
        if values.get("semantic"):
            raise InvalidRequest("x-thrifty-cache: 'semantic' and 'no-semantic' contradict.", param=PARAM)
        values["semantic"] = False
    return _build(values)


def _from_body(raw: Mapping[str, Any]) -> RequestCache:
    known = {"no_cache", "no_store", "ttl", "namespace", "semantic"}
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise InvalidRequest(
            f"thrifty.cache: unknown option {unknown[0]!r}; expected one of {', '.join(sorted(known))}.",
            param=PARAM,
        )
    for key in ("no_cache", "no_store", "semantic"):
        if key in raw and not isinstance(raw[key], bool):
            raise InvalidRequest(f"thrifty.cache.{key} must be true or false.", param=PARAM)
    ttl = raw.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0):
        raise InvalidRequest(
            f"thrifty.cache.ttl must be a positive number of seconds, got {ttl!r}.", param=PARAM
        )
    namespace = raw.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str):
        raise InvalidRequest("thrifty.cache.namespace must be a string.", param=PARAM)
    return _build({**raw, "ttl": None if ttl is None else float(ttl)})


def _ttl_text(value: str) -> float:
    try:
        ttl = float(value)
    except ValueError:
        ttl = -1.0
    if not ttl > 0 or ttl == float("inf"):
        raise InvalidRequest(
            f"x-thrifty-cache: ttl must be a positive number of seconds, got {value!r}.", param=PARAM
        )
    return ttl


def _build(values: Mapping[str, Any]) -> RequestCache:
    namespace = values.get("namespace", DEFAULT_NAMESPACE)
    if not _NAMESPACE.match(namespace):
        raise InvalidRequest(
            f"cache namespace {namespace!r} must be 1-64 letters, digits, '_', '.' or '-'.", param=PARAM
        )
    return RequestCache(
        no_cache=bool(values.get("no_cache", False)),
        no_store=bool(values.get("no_store", False)),
        ttl=values.get("ttl"),
        namespace=namespace,
        semantic=values.get("semantic"),
    )
