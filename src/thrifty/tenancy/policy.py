"""What a key or a team may do: budgets, rate limits, model allow-lists.

Pure data and parsing, no I/O. Every parse error is an :class:`InvalidRequest`
naming the field, so the admin API and the CLI report bad input the same way.

    Budget.parse("50/month")   -> $50 per calendar month (UTC)
    Budget.parse("10")         -> $10 in total, never reset
    parse_duration("30d")      -> 2_592_000.0 seconds
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest

PERIODS = ("day", "week", "month", "total")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")
MAX_DURATION_S = 100 * 366 * 86400.0  # a key's lifetime: at most a century


@dataclass(frozen=True)
class Budget:
    """A spending cap in US dollars over a period (UTC calendar day/week/month, or total)."""

    usd: float
    period: str = "month"

    @classmethod
    def parse(cls, text: Any, param: str = "budget") -> Budget:
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            amount, period = float(text), "total"
        elif isinstance(text, str):
            head, _, tail = text.strip().lstrip("$").partition("/")
            period = tail.strip().lower() or "total"
            try:
                amount = float(head)
            except ValueError:
                raise InvalidRequest(
                    f"'{param}' must look like '50/month' (amount in USD / day, week, month or total), "
                    f"got {text!r}.",
                    param=param,
                ) from None
        else:
            raise InvalidRequest(f"'{param}' must be a string like '50/month' or a number.", param=param)
        if period not in PERIODS:
            raise InvalidRequest(
                f"'{param}' period must be one of {', '.join(PERIODS)}, got {period!r}.", param=param
            )
        if not math.isfinite(amount) or not 0 <= amount < 1e12:
            raise InvalidRequest(
                f"'{param}' amount must be a non-negative number, got {amount!r}.", param=param
            )
        return cls(amount, period)

    def window(self, now: float) -> tuple[float, float]:
        """The current period as (start, end) epoch seconds; total runs from 0 to infinity."""
        return period_window(self.period, now)

    def __str__(self) -> str:
        return f"{self.usd:g}/{self.period}"


def period_window(period: str, now: float) -> tuple[float, float]:
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    day = dt.datetime(t.year, t.month, t.day, tzinfo=dt.UTC)
    if period == "day":
        start, end = day, day + dt.timedelta(days=1)
    elif period == "week":
        start = day - dt.timedelta(days=t.weekday())
        end = start + dt.timedelta(days=7)
    elif period == "month":
        start = dt.datetime(t.year, t.month, 1, tzinfo=dt.UTC)
        days = calendar.monthrange(t.year, t.month)[1]
        end = start + dt.timedelta(days=days)
    else:
        return 0.0, math.inf
    return start.timestamp(), end.timestamp()


@dataclass(frozen=True)
class Limits:
    """Requests per minute, tokens per minute, requests in flight; None means no limit."""

    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Limits:
        values: dict[str, int | None] = {}
        for name in ("rpm", "tpm", "parallel"):
            value = raw.get(name)
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                value = int(value)  # 100.0 is an integer in JSON (and in /openapi.json's schema)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**53
            ):
                raise InvalidRequest(
                    f"'{name}' must be a positive integer below 2**53, got {value!r}.", param=name
                )
            values[name] = value
        return cls(**values)


@dataclass(frozen=True)
class Policy:
    """Budget, limits and model allow-list of one key or one team."""

    budget: Budget | None = None
    limits: Limits = field(default_factory=Limits)
    models: tuple[str, ...] = ()  # empty: every model

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models


def parse_duration(text: Any, param: str = "expires") -> float:
    """'30d', '12h', '90m', '45s', '2w' -> seconds (more than 0, at most :data:`MAX_DURATION_S`)."""
    seconds = 0.0
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    elif isinstance(text, str) and (match := _DURATION.match(text)) is not None:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 < seconds <= MAX_DURATION_S:
        raise InvalidRequest(
            f"'{param}' must be a duration like '30d', '12h' or '90m', at most {MAX_DURATION_S:.0f} s "
            f"(a century), got {text!r}.",
            param=param,
        )
    return seconds


def check_name(value: Any, param: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidRequest(
            f"'{param}' must be 1-64 letters, digits or _.:@- starting with a letter or digit, got {value!r}.",
            param=param,
        )
    return value


def check_models(value: Any, known: Sequence[str] | None, param: str = "models") -> tuple[str, ...]:
    """An allow-list: a list or comma-separated string of served model names."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"'{param}' must be a list of model names.", param=param)
    if known is not None:
        unknown = [v for v in value if v not in known]
        if unknown:
            raise InvalidRequest(
                f"'{param}' names models this gateway does not serve: {', '.join(unknown)}; "
                f"served: {', '.join(known)}.",
                param=param,
            )
    return tuple(dict.fromkeys(value))


def parse_policy(raw: Mapping[str, Any], known_models: Sequence[str] | None) -> Policy:
    """A policy from admin-API JSON or CLI flags: ``budget``, ``rpm``, ``tpm``, ``parallel``, ``models``."""
    budget = raw.get("budget")
    return Policy(
        budget=None if budget is None else Budget.parse(budget),
        limits=Limits.parse(raw),
        models=check_models(raw.get("models"), known_models),
    )
