"""Building routers from config, and explaining a decision without calling a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..backend import Backend
from ..config import Config
from . import features as F
from .feedback import FeedbackLearner
from .policies import LearnedPolicy, RouterUnavailable, RulesPolicy
from .router import Router
from .settings import parse_routing
from .vectors import Embed
from .verify import make_verifier


def build_routers(
    config: Config, groups: Mapping[str, Backend], embed: Embed | None = None
) -> dict[str, Backend]:
    """Router name -> router backend over the groups' backends; empty without a routing section.

    ``groups`` maps model-group names to their (already wrapped) backends;
    ``embed`` is the stack's embedding model, for learned routers that read MiniLM vectors.
    Raises ConfigError naming file and key for any bad setting.
    """
    routing = parse_routing(config)
    if routing is None:
        return {}
    where = config.where("routing") / "tiers"
    for i, tier in enumerate(routing.tiers):
        if tier.group not in groups:
            raise (where / i / "model").error(f"model group {tier.group!r} has no backend")
    learner = FeedbackLearner(routing.feedback) if routing.feedback.enabled else None
    routers: dict[str, Backend] = {}
    for spec in routing.routers:
        tiers = [routing.tier(name) for name in spec.candidates]
        backends = {t.name: groups[t.group] for t in tiers}
        judge = routing.tier(spec.judge) if spec.judge else None
        peer = routing.tier(spec.peer) if spec.peer else None
        verifier = make_verifier(
            spec.verifier,
            groups[judge.group] if judge else None,
            judge.group if judge else "",
            groups=groups,
            samples=spec.samples,
            peer=groups[peer.group] if peer else None,
            peer_model=peer.group if peer else "",
        )
        priced = {t.group: t for t in (judge, peer) if t is not None}  # verifier calls outside the tiers
        routers[spec.name] = Router(spec, tiers, backends, verifier, learner, embed, priced)
    return routers


def explain(text: str, config: Config) -> dict[str, Any]:
    """What each configured router would do with ``text``, and why (no model is called)."""
    routing = parse_routing(config)
    feats = F.extract(text, {})
    out: dict[str, Any] = {
        "features": {k: round(v, 3) for k, v in feats.items()},
        "complexity": round(F.complexity(feats), 3),
        "kind": F.request_kind(feats),
        "routers": {},
    }
    if routing is None:
        out["note"] = "no routing section in the config"
        return out
    for spec in routing.routers:
        tiers = [routing.tier(name) for name in spec.candidates]
        entry: dict[str, Any] = {"policy": spec.policy, "candidates": list(spec.candidates)}
        rules = RulesPolicy(spec).decide(text, {}, tiers)
        entry["rules"] = {
            "tier": tiers[rules.index].name,
            "score": round(rules.score or 0.0, 3),
            "thresholds": list(spec.thresholds),
        }
        if spec.model_file:
            try:
                pick = LearnedPolicy(spec).decide(text, {}, tiers)
                entry["learned"] = {
                    "tier": tiers[pick.index].name,
                    "predicted": {k: round(v, 3) for k, v in pick.features.items()},
                }
            except RouterUnavailable as exc:
                entry["learned"] = {"tier": spec.default, "fallback": str(exc)}
        if spec.policy == "cascade":
            started = entry.get(spec.start, {"tier": tiers[0].name})
            entry["cascade"] = {
                "start": started.get("tier", tiers[0].name),
                "start_by": spec.start,
                "accept": dict(spec.accept),
                "max_escalations": spec.max_escalations,
                "verifier": spec.verifier,
            }
        chosen = entry.get(spec.policy, entry["rules"])
        entry["tier"] = chosen.get("tier", chosen.get("start"))
        entry["price_per_1m"] = {t.name: [t.input_price, t.output_price] for t in tiers}
        out["routers"][spec.name] = entry
    return out
