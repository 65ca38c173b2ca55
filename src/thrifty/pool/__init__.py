"""A pool of devices: any machine lends its models to the gateway and pulls work over HTTP.

``provider: pool`` in a model group makes the pool a deployment of that group
(:class:`~.backend.PoolBackend`); the ``pool`` section names the Redis that holds
the shared state (:mod:`.settings`). Workers join with a token from the admin
API and lease tasks over outbound HTTP (``docs/pool-protocol.md``), so they can
sit behind NAT. The parts::

    protocol.py          the wire messages, parsed and checked
    matcher.py           which worker takes a task (pure)
    coordinator.py       the shared state in Redis Streams: dispatch, results, sweep, migration
    backend.py           the Backend the stack sees
    routes.py            the workers' doors and the admin API
    worker.py            ``thrifty worker``: llama.cpp behind the protocol
    reference_worker.py  the protocol in ~200 lines of standard library
    cli.py               ``thrifty worker`` and ``thrifty pool``
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from ..backend import Backend
    from ..config import Config, Deployment
    from ..gateway import Gateway
    from ..server.access import Access
    from .coordinator import Pool


def build_pool(config: Config) -> Pool | None:
    """The pool a gateway's stack owns, when the config has a ``pool`` section."""
    from .settings import parse_pool

    settings = parse_pool(config)
    if settings is None:
        return None
    from .coordinator import Pool

    return Pool(settings)


def pool_provider(pool: Pool, build: Callable[[Deployment], Backend]) -> Callable[[Deployment], Backend]:
    """``build`` for every deployment, with ``provider: pool`` ones answered by ``pool``."""

    def make(deployment: Deployment) -> Backend:
        if deployment.provider != "pool":
            return build(deployment)
        from .backend import PoolBackend

        return PoolBackend(deployment, pool)

    return make


def pool_routes(gateway: Gateway, access: Access) -> list[BaseRoute]:
    """The workers' and admins' routes, when the gateway's stack has a pool."""
    pool = gateway.stack.pool
    if pool is None:
        return []
    from .routes import build_routes

    server = gateway.config.server
    return build_routes(pool, access, server.max_body_bytes, server.max_json_depth)


__all__ = ["build_pool", "pool_provider", "pool_routes"]
