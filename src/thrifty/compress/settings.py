"""The ``compress:`` config section, a model group's ``compress:`` option, and per-request choices.

    compress:
      mode: off                 # off | minimal | balanced | aggressive (every group's default)
      budget_tokens: 4000       # balanced, aggressive: older turns beyond this are summarised
      block: 8                  # the summary's cut moves in steps of this many messages
      ratio: 0.25               # aggressive: share of the long context's tokens kept
      scorer: bm25              # aggressive: bm25, or hybrid (bm25 + the stack's MiniLM)
      min_tokens: 200           # shorter requests go through untouched
      exact_tokens: false       # count with tiktoken (2 ms per 10k tokens) instead of estimating
      layout: true              # tools in a deterministic order, so prompt prefixes repeat
      prompt_cache_key: false   # set OpenAI's prompt_cache_key per tenant and stable prefix
      cache_control: true       # Anthropic upstreams: cache breakpoints on the stable prefix
      summary_model: null       # balanced, aggressive: a model group that writes the summary
      summary_timeout_s: 5      # past this (or on any failure) the extractive summary is used
      keys: {key_9f2c: aggressive}   # per virtual key (its id or name)

    models:
      - name: chat
        compress: balanced       # or {mode: aggressive, ratio: 0.2}, or false (never)

Per request: ``{"thrifty": {"compress": "balanced"}}``, ``{"thrifty": {"compress":
{"mode": "aggressive", "ratio": 0.2}}}`` or the header ``x-thrifty-compress:
aggressive, ratio=0.2``. A request's choice wins over its key's, which wins over
its group's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import (
    Config,
    ModelGroup,
    Where,
    check_fraction,
    read_bool,
    read_positive,
    read_positive_int,
    reject_unknown,
)
from ..errors import ConfigError, InvalidRequest

MODES = ("off", "minimal", "balanced", "aggressive")
SCORERS = ("bm25", "hybrid")
PARAM = "x-thrifty-compress"

_TUNING = {"budget_tokens", "block", "ratio", "scorer", "min_tokens"}
_GROUP_KEYS = {
    "mode",
    "enabled",
    "exact_tokens",
    "layout",
    "prompt_cache_key",
    "cache_control",
    "summary_model",
    "summary_timeout_s",
} | _TUNING
_SECTION_KEYS = _GROUP_KEYS | {"keys"}


@dataclass(frozen=True)
class Knobs:
    """How one request is compressed."""

    mode: str = "off"
    budget_tokens: int = 4000
    block: int = 8
    ratio: float = 0.25
    scorer: str = "bm25"
    min_tokens: int = 200


@dataclass(frozen=True)
class CompressSettings:
    """How one model group compresses, and what its keys ask for."""

    enabled: bool = True  # False: the group never compresses (no layer at all)
    knobs: Knobs = Knobs()
    exact_tokens: bool = False
    layout: bool = True
    prompt_cache_key: bool = False
    cache_control: bool = True
    summary_model: str = ""  # a model group that writes the summary of old turns; "": extractive
    summary_timeout_s: float = 5.0
    keys: Mapping[str, str] = field(default_factory=dict)


def parse_settings(config: Config, group: ModelGroup) -> CompressSettings:
    """The section's defaults, then the group's own ``compress:``."""
    where = config.where("compress")
    section = _as_mapping(config.sections.get("compress"), where)
    settings = _apply(CompressSettings(), section, where, _SECTION_KEYS)
    keys = section.get("keys") or {}
    if not isinstance(keys, Mapping) or not all(isinstance(v, str) for v in keys.values()):
        raise (where / "keys").error("must map a key id or name to a mode")
    for name, mode in keys.items():
        _check_mode(mode, where / "keys" / str(name))
    settings = replace(settings, keys={str(k): v for k, v in keys.items()})
    own = group.options.get("compress")
    gwhere = config.where(f"models.{group.name}.compress")
    if own is not None:
        settings = _apply(settings, _as_mapping(own, gwhere), gwhere, _GROUP_KEYS)
    names = [g.name for g in config.models]
    if settings.summary_model and settings.summary_model not in names:
        raise (gwhere / "summary_model").error(
            f"no model group named {settings.summary_model!r}; groups: {', '.join(names)}"
        )
    if settings.summary_model == group.name:  # the summary group itself summarises extractively
        settings = replace(settings, summary_model="")
    return settings


def _as_mapping(raw: Any, where: Where) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if raw is False:
        return {"enabled": False}
    if isinstance(raw, str):
        return {"mode": raw}
    if isinstance(raw, Mapping):
        return raw
    raise where.error("must be a mode (off, minimal, balanced, aggressive), a mapping of settings, or false")


def _apply(
    settings: CompressSettings, raw: Mapping[str, Any], where: Where, known: set[str]
) -> CompressSettings:
    reject_unknown(raw, known, where)
    knobs = _tune(settings.knobs, {k: v for k, v in raw.items() if k in _TUNING | {"mode"}}, where)
    return replace(
        settings,
        enabled=read_bool(raw, "enabled", where, settings.enabled),
        knobs=knobs,
        exact_tokens=read_bool(raw, "exact_tokens", where, settings.exact_tokens),
        layout=read_bool(raw, "layout", where, settings.layout),
        prompt_cache_key=read_bool(raw, "prompt_cache_key", where, settings.prompt_cache_key),
        cache_control=read_bool(raw, "cache_control", where, settings.cache_control),
        summary_model=_summary_model(raw, where, settings.summary_model),
        summary_timeout_s=read_positive(raw, "summary_timeout_s", where, settings.summary_timeout_s),
    )


def _summary_model(raw: Mapping[str, Any], where: Where, default: str) -> str:
    value = raw.get("summary_model", default)
    if value is None or value is False:
        return ""
    if not isinstance(value, str):
        raise (where / "summary_model").error(f"must name a model group, got {value!r}")
    return value


def _check_mode(mode: Any, where: Where) -> str:
    if mode not in MODES:
        raise where.error(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return str(mode)


def _tune(knobs: Knobs, raw: Mapping[str, Any], where: Where) -> Knobs:
    changes: dict[str, Any] = {}
    if "mode" in raw:
        changes["mode"] = _check_mode(raw["mode"], where / "mode")
    for key in ("budget_tokens", "block", "min_tokens"):
        if key in raw:
            changes[key] = read_positive_int(raw, key, where, 1)
    if "ratio" in raw:
        ratio = check_fraction(raw["ratio"], where / "ratio")
        if ratio == 0:
            raise (where / "ratio").error("must be above 0: something of the context has to stay")
        changes["ratio"] = ratio
    if "scorer" in raw:
        if raw["scorer"] not in SCORERS:
            raise (where / "scorer").error(
                f"unknown scorer {raw['scorer']!r}; expected one of {', '.join(SCORERS)}"
            )
        changes["scorer"] = raw["scorer"]
    return replace(knobs, **changes) if changes else knobs


def request_knobs(
    settings: CompressSettings, options: Mapping[str, Any], key_id: str = "", key_name: str = ""
) -> Knobs:
    """The knobs for one request: the group's, then its key's mode, then the request's own choice."""
    knobs = settings.knobs
    if settings.keys and (key_id or key_name):
        mode = settings.keys.get(key_id) or settings.keys.get(key_name)
        if mode:
            knobs = replace(knobs, mode=mode)
    raw = options.get("compress")
    if raw is None:
        return knobs
    where = Where("request", "thrifty.compress")
    try:
        if isinstance(raw, bool):
            return replace(knobs, mode="balanced" if raw else "off")
        if isinstance(raw, str):
            return _tune(knobs, _from_header(raw), where)
        if isinstance(raw, Mapping):
            reject_unknown(raw, _TUNING | {"mode"}, where)
            return _tune(knobs, raw, where)
    except ConfigError as exc:
        raise InvalidRequest(_request_words(exc), param=PARAM) from None
    raise InvalidRequest(
        "'thrifty.compress' must be a mode (off, minimal, balanced, aggressive), an object or a boolean.",
        param=PARAM,
    )


def _request_words(exc: ConfigError) -> str:
    """A config-style message ("request: thrifty.compress.ratio: ...") for a client."""
    return exc.message.removeprefix("request: ")


def _from_header(raw: str) -> dict[str, Any]:
    """``aggressive, ratio=0.2, budget_tokens=3000`` -> the same as a body object."""
    values: dict[str, Any] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, eq, value = (s.strip() for s in part.partition("="))
        if not eq:
            values["mode"] = name.lower()
        elif name == "ratio":
            values[name] = _number(value, float, name)
        elif name in ("budget_tokens", "block", "min_tokens"):
            values[name] = _number(value, int, name)
        elif name == "scorer":
            values[name] = value
        else:
            raise InvalidRequest(
                f"x-thrifty-compress: unknown setting {name!r}; expected a mode, ratio=, budget_tokens=, "
                "block=, min_tokens= or scorer=.",
                param=PARAM,
            )
    return values


def _number(value: str, kind: type[int] | type[float], name: str) -> int | float:
    try:
        return kind(value)
    except ValueError:
        raise InvalidRequest(
            f"x-thrifty-compress: {name} must be a number, got {value!r}.", param=PARAM
        ) from None


__all__ = ["MODES", "CompressSettings", "Knobs", "parse_settings", "request_knobs"]
