"""Builders the gateway's composition calls: one balanced group, then fallbacks."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from ..backend import Backend
from ..config import Config, ModelGroup
from .balancer import Balancer
from .clock import Clock
from .fallbacks import FallbackChain
from .health import Probe
from .member import Member
from .settings import group_where, parse_group


def build_group(
    group: ModelGroup,
    deployments: Sequence[Backend],
    config: Config,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    probe: Probe | None = None,
) -> Backend:
    """A :class:`Balancer` over ``deployments`` (one backend per ``group.deployments`` entry, same order).

    A group with a ``replicas`` option (see :func:`replicas.replica_config`)
    comes wrapped in a :class:`SupervisedGroup` that runs its replica processes.
    """
    where = group_where(config, group)
    if len(deployments) != len(group.deployments):
        raise where.error(f"got {len(deployments)} backends for {len(group.deployments)} deployments")
    settings = parse_group(config, group)
    if (
        settings.max_queue is not None
        and settings.max_concurrency is None
        and any(d.max_concurrency is None for d in group.deployments)
    ):
        raise (where / "max_queue").error(
            "needs max_concurrency on the group (or on every deployment) to know when to queue"
        )
    from .clock import MonotonicClock

    clock = clock or MonotonicClock()
    try:
        members = [
            Member(dep, backend, settings.breaker, clock)
            for dep, backend in zip(group.deployments, deployments, strict=True)
        ]
    except ValueError as exc:
        raise (where / "deployments").error(str(exc)) from None
    balancer = Balancer(group.name, members, settings, clock=clock, rng=rng, probe=probe)
    if "replicas" not in group.options:
        return balancer
    from .replicas import ReplicaSupervisor, SupervisedGroup, spec_from_options

    spec = spec_from_options(group, where / "replicas")
    if len(spec.ports) != len(group.deployments):
        raise (where / "replicas" / "ports").error("needs one port per deployment")
    if "autoscale" not in group.options:
        return SupervisedGroup(balancer, ReplicaSupervisor(spec))
    from ..observe.settings import parse_ledger
    from .elastic import ElasticGroup
    from .scaling import parse_scaling

    scaling = parse_scaling(group.options["autoscale"], where / "autoscale")
    if scaling.max_replicas != spec.replicas:
        raise (where / "autoscale" / "max_replicas").error(
            f"is {scaling.max_replicas} but the group has {spec.replicas} replica slots"
        )
    return ElasticGroup(balancer, ReplicaSupervisor(spec), scaling, ledger_path=parse_ledger(config).path)


def build_fallbacks(config: Config, groups: Mapping[str, Backend]) -> dict[str, Backend]:
    """Every group, wrapped in a :class:`FallbackChain` when it names fallbacks.

    Fallback targets are the other groups as given (not their chains), so a
    request falls back one level and fallbacks cannot loop.
    """
    out: dict[str, Backend] = dict(groups)
    for group in config.models:
        if group.name not in groups:
            continue
        settings = parse_group(config, group)
        if not settings.fallbacks and not settings.context_window_fallbacks:
            continue
        where = group_where(config, group)
        for key in ("fallbacks", "context_window_fallbacks"):
            for target in getattr(settings, key):
                if target not in groups:
                    raise (where / key).error(f"fallback group {target!r} was not built")
        out[group.name] = FallbackChain(
            groups[group.name],
            [(name, groups[name]) for name in settings.fallbacks],
            [(name, groups[name]) for name in settings.context_window_fallbacks],
        )
    return out
