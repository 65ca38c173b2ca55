"""The ``routing:`` config section, parsed into frozen typed objects.

Example::

    routing:
      default: balanced              # where requests go when a router fails
      feedback: false                # true turns on learning from ratings
      tiers:                         # ordered cheapest first
        - {name: fast, model: smollm2, capabilities: [chat]}
        - {name: balanced, model: gemma}
        - {name: powerful, model: gpt4o, price: {input: 2.5, output: 10}}
      routers:
        - {name: thrifty/auto, policy: rules, candidates: [fast, balanced, powerful]}
        - {name: thrifty/cascade, policy: cascade, candidates: [fast, powerful], accept: 0.6}

Every problem raises :class:`~thrifty.errors.ConfigError` naming file and key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .. import prices
from ..config import (
    Config,
    Deployment,
    Where,
    read_bool,
    read_count,
    read_fraction,
    read_non_negative,
    reject_unknown,
)

POLICIES = ("rules", "learned", "cascade")
VERIFIERS = ("auto", "logprobs", "format", "judge", "consistency", "agreement")
CASCADE_STARTS = ("first", "rules", "learned")  # who picks the tier a cascade starts from


@dataclass(frozen=True)
class Tier:
    """A rung of the price ladder: a model group with its price per 1M tokens."""

    name: str
    group: str
    input_price: float = 0.0
    output_price: float = 0.0
    capabilities: frozenset[str] | None = None  # None: not declared, assume all

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for one call with these token counts."""
        return (prompt_tokens * self.input_price + completion_tokens * self.output_price) / 1e6

    def supports(self, needs: frozenset[str]) -> bool:
        return self.capabilities is None or needs <= self.capabilities


@dataclass(frozen=True)
class RouterSpec:
    """One routed model name and how it picks among its candidate tiers."""

    name: str
    policy: str
    candidates: tuple[str, ...]
    default: str
    thresholds: tuple[float, ...] = ()  # rules: complexity cut points, ascending in [0, 1]
    model_file: str | None = None  # learned: fitted router (.npz)
    quality_target: float | None = None  # learned: cheapest tier predicted to clear this
    cost_weight: float | None = None  # learned: maximise quality - weight * relative cost
    # learned, neither set: the λ cross-validation chose when the file was fitted (else target 0.7)
    accept: Mapping[str, float] = field(default_factory=dict)  # cascade: min score per tier
    max_escalations: int = 2
    budget_usd: float | None = None
    verifier: str = "auto"
    judge: str | None = None  # cascade with verifier=judge: the tier that grades
    samples: int = 3  # cascade with verifier=consistency: answers drawn from a tier, itself included
    peer: str | None = None  # cascade with verifier=agreement: the tier whose answer must agree
    start: str = "first"  # cascade: start at the cheapest tier, or where rules/learned would route


@dataclass(frozen=True)
class FeedbackSettings:
    enabled: bool = False
    target: float = 0.7  # success rate a tier must keep to stay the start tier
    explore: float = 0.0  # chance of trying one tier cheaper, to gather evidence
    seed: int = 0


@dataclass(frozen=True)
class RoutingConfig:
    tiers: tuple[Tier, ...]
    routers: tuple[RouterSpec, ...]
    default: str
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)


def parse_routing(config: Config) -> RoutingConfig | None:
    """The routing section of ``config``, or None when there is none."""
    raw = config.sections.get("routing")
    if raw is None:
        return None
    where = config.where("routing")
    if not isinstance(raw, dict):
        raise where.error("must be a mapping with 'tiers' and 'routers'")
    reject_unknown(raw, {"tiers", "routers", "default", "feedback"}, where)
    tiers = _parse_tiers(raw.get("tiers"), where / "tiers", config)
    names = [t.name for t in tiers]
    default = raw.get("default", names[-1] if len(names) < 3 else names[len(names) // 2])
    if default not in names:
        raise (where / "default").error(f"unknown tier {default!r}; tiers are {', '.join(names)}")
    routers = _parse_routers(raw.get("routers"), where / "routers", names, default)
    feedback = _parse_feedback(raw.get("feedback", False), where / "feedback")
    return RoutingConfig(tiers=tiers, routers=routers, default=default, feedback=feedback)


def _parse_tiers(raw: Any, where: Where, config: Config) -> tuple[Tier, ...]:
    if not isinstance(raw, list) or not raw:
        raise where.error("must be a non-empty list of tiers, cheapest first")
    tiers: list[Tier] = []
    for i, item in enumerate(raw):
        at = where / i
        if not isinstance(item, dict):
            raise at.error("each tier must be a mapping with 'name' and 'model'")
        reject_unknown(item, {"name", "model", "price", "price_model", "capabilities"}, at)
        name = _text(item, "name", at)
        if any(t.name == name for t in tiers):
            raise (at / "name").error(f"tier {name!r} is defined twice")
        group_name = _text(item, "model", at) if "model" in item else name
        group = config.group(group_name)
        if group is None:
            known = ", ".join(g.name for g in config.models)
            raise (at / "model").error(f"unknown model group {group_name!r}; known: {known}")
        price = _parse_price(item, at, group.deployments[0], group_name)
        caps = item.get("capabilities")
        if caps is not None and (
            not isinstance(caps, list) or not all(isinstance(c, str) and c for c in caps)
        ):
            raise (at / "capabilities").error("must be a list of names, e.g. [tools, vision]")
        capabilities = None if caps is None else frozenset(caps)
        tiers.append(Tier(name, group_name, price[0], price[1], capabilities))
    return tuple(tiers)


def _parse_price(item: Mapping[str, Any], at: Where, dep: Deployment, group: str) -> tuple[float, float]:
    raw = item.get("price")
    if raw is not None:
        if not isinstance(raw, dict) or set(raw) - {"input", "output"}:
            raise (at / "price").error("must be a mapping {input: USD per 1M, output: USD per 1M}")
        return (
            read_non_negative(raw, "input", at / "price", 0.0),
            read_non_negative(raw, "output", at / "price", 0.0),
        )
    if "price_model" in item:
        dep = replace(dep, price_model=_text(item, "price_model", at))
    rates = prices.lookup(dep)
    if not rates.priced:
        raise (at / "price").error(
            f"no known price for {group!r} (model {dep.price_model or dep.model!r}); "
            "give price: {input: ..., output: ...} in USD per 1M tokens"
        )
    return (rates.input * 1e6, rates.output * 1e6)


def _parse_routers(raw: Any, where: Where, tiers: list[str], default: str) -> tuple[RouterSpec, ...]:
    if raw is None:
        raw = [{"name": "thrifty/auto", "policy": "rules"}]
    if not isinstance(raw, list):
        raise where.error("must be a list of routers")
    specs: list[RouterSpec] = []
    for i, item in enumerate(raw):
        spec = _parse_router(item, where / i, tiers, default)
        if any(s.name == spec.name for s in specs):
            raise (where / i / "name").error(f"router {spec.name!r} is defined twice")
        specs.append(spec)
    return tuple(specs)


_ROUTER_KEYS = {
    "name",
    "policy",
    "candidates",
    "default",
    "thresholds",
    "model_file",
    "quality_target",
    "cost_weight",
    "accept",
    "max_escalations",
    "budget_usd",
    "verifier",
    "judge",
    "samples",
    "peer",
    "start",
}


def _parse_router(item: Any, at: Where, tiers: list[str], default: str) -> RouterSpec:
    if not isinstance(item, dict):
        raise at.error("each router must be a mapping with 'name' and 'policy'")
    reject_unknown(item, _ROUTER_KEYS, at)
    name = _text(item, "name", at)
    policy = item.get("policy", "rules")
    if policy not in POLICIES:
        raise (at / "policy").error(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    candidates = item.get("candidates", tiers)
    if not isinstance(candidates, list) or not candidates:
        raise (at / "candidates").error("must be a non-empty list of tier names")
    for j, cand in enumerate(candidates):
        if cand not in tiers:
            raise (at / "candidates" / j).error(f"unknown tier {cand!r}; tiers are {', '.join(tiers)}")
    ordered = tuple(t for t in tiers if t in candidates)  # always cheapest first
    router_default = item.get("default", default if default in ordered else ordered[-1])
    if router_default not in ordered:
        raise (at / "default").error(f"{router_default!r} is not one of this router's candidates")
    return RouterSpec(
        name=name,
        policy=policy,
        candidates=ordered,
        default=router_default,
        thresholds=_parse_thresholds(item.get("thresholds"), at / "thresholds", len(ordered)),
        model_file=_text(item, "model_file", at) if "model_file" in item else None,
        quality_target=None
        if item.get("quality_target") is None
        else read_fraction(item, "quality_target", at, 0.7),
        cost_weight=None
        if item.get("cost_weight") is None
        else read_non_negative(item, "cost_weight", at, 0.0),
        accept=_parse_accept(item.get("accept", 0.5), at / "accept", ordered),
        max_escalations=read_count(item, "max_escalations", at, len(ordered) - 1),
        budget_usd=None if item.get("budget_usd") is None else read_non_negative(item, "budget_usd", at, 0.0),
        verifier=_choice(item, "verifier", at, VERIFIERS, "auto"),
        judge=_judge(item, at, tiers),
        samples=_samples(item, at),
        peer=_peer(item, at, tiers),
        start=_start(item, at),
    )


def _parse_thresholds(raw: Any, at: Where, n: int) -> tuple[float, ...]:
    if raw is None:  # evenly spaced over [0, 0.6]: few real prompts score above 0.6
        return tuple(round(0.6 * i / n, 4) for i in range(1, n))
    if not isinstance(raw, list) or len(raw) != n - 1:
        raise at.error(f"must be a list of {n - 1} ascending numbers in [0, 1] (one per tier boundary)")
    values: list[float] = []
    for j, value in enumerate(raw):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise (at / j).error(f"must be a number in [0, 1], got {value!r}")
        if values and value < values[-1]:
            raise (at / j).error("thresholds must be ascending")
        values.append(float(value))
    return tuple(values)


def _parse_accept(raw: Any, at: Where, tiers: tuple[str, ...]) -> Mapping[str, float]:
    if isinstance(raw, dict):
        for key in raw:
            if key not in tiers:
                raise (at / str(key)).error(f"{key!r} is not one of this router's candidates")
        return {t: read_fraction(raw, t, at, 0.5) for t in tiers}
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= 1:
        raise at.error(f"must be a score in [0, 1] or a mapping tier -> score, got {raw!r}")
    return {t: float(raw) for t in tiers}


def _parse_feedback(raw: Any, at: Where) -> FeedbackSettings:
    if isinstance(raw, bool):
        return FeedbackSettings(enabled=raw)
    if not isinstance(raw, dict):
        raise at.error("must be true/false or a mapping {enabled, target, explore, seed}")
    reject_unknown(raw, {"enabled", "target", "explore", "seed"}, at)
    enabled = read_bool(raw, "enabled", at, True)
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise (at / "seed").error("must be an integer")
    return FeedbackSettings(
        enabled=enabled,
        target=read_fraction(raw, "target", at, 0.7),
        explore=read_fraction(raw, "explore", at, 0.0),
        seed=seed,
    )


def _judge(item: Mapping[str, Any], at: Where, tiers: list[str]) -> str | None:
    judge = item.get("judge")
    if judge is None:
        if item.get("verifier") == "judge":
            raise (at / "judge").error("verifier 'judge' needs judge: <tier name>")
        return None
    if judge not in tiers:
        raise (at / "judge").error(f"unknown tier {judge!r}")
    return str(judge)


def _text(raw: Mapping[str, Any], key: str, at: Where) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise (at / key).error(f"must be a non-empty string, got {value!r}")
    return value


def _choice(raw: Mapping[str, Any], key: str, at: Where, options: tuple[str, ...], default: str) -> str:
    value = raw.get(key, default)
    if value not in options:
        raise (at / key).error(f"must be one of {', '.join(options)}, got {value!r}")
    return str(value)


def _samples(item: Mapping[str, Any], at: Where) -> int:
    samples = item.get("samples", 3)
    if isinstance(samples, bool) or not isinstance(samples, int) or not 2 <= samples <= 16:
        raise (at / "samples").error(f"must be an integer from 2 to 16 (answers compared), got {samples!r}")
    return samples


def _peer(item: Mapping[str, Any], at: Where, tiers: list[str]) -> str | None:
    peer = item.get("peer")
    if peer is None:
        if item.get("verifier") == "agreement":
            raise (at / "peer").error(
                "verifier 'agreement' needs peer: <tier name> (whose answer must agree)"
            )
        return None
    if peer not in tiers:
        raise (at / "peer").error(f"unknown tier {peer!r}")
    return str(peer)


def _start(item: Mapping[str, Any], at: Where) -> str:
    start = item.get("start", "first")
    if start not in CASCADE_STARTS:
        raise (at / "start").error(f"must be one of {', '.join(CASCADE_STARTS)}, got {start!r}")
    if start == "learned" and item.get("model_file") is None:
        raise (at / "start").error("start 'learned' needs model_file: a fitted router")
    return str(start)
