"""The pool's HTTP doors: the workers' protocol (``/pool/v1``) and the admin API (``/admin/pool``).

Workers (``Authorization: Bearer <join token>``; the token is the worker's identity)::

    POST /pool/v1/join                    capabilities in; worker id, heartbeat interval out
    POST /pool/v1/lease                   long poll: the tasks sent to this worker, and only those
    POST /pool/v1/heartbeat               still here (load, power); answers the worker's state
    POST /pool/v1/tasks/{task_id}/result  chunks, the answer or an error; only from the lease holder
    POST /pool/v1/release                 drain (finish what it has) or leave

Admins (``server/access.py``)::

    GET /admin/pool/workers   POST|GET /admin/pool/tokens   DELETE /admin/pool/tokens/{token_id}
    GET /dashboard/api/pool   (the workers' overview again, under the dashboard session's cookie path)

Every refusal is OpenAI's error JSON and a log line naming the worker and the reason.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import AuthenticationError, InvalidRequest, StorageUnavailable, ThriftyError
from . import protocol

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ..server.access import Access
    from .coordinator import Pool

log = logging.getLogger("thrifty.pool")

_TASK_ID = re.compile(r"^[0-9a-f]{20}$")
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")


def _json(body: Any, status: int = 200) -> Response:
    from starlette.responses import Response

    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store"},
    )


def _refusal(exc: ThriftyError) -> Response:
    from starlette.responses import Response

    return Response(
        orjson.dumps(exc.to_json()),
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers(),
    )


_REDIS_DOWN = "The pool's shared state (Redis) is unreachable; retry soon."

Work = Callable[["Request", str, dict[str, Any]], Awaitable[Any]]
AdminWork = Callable[["Request", dict[str, Any]], Awaitable[Any]]
Handler = Callable[["Request"], Awaitable["Response"]]


class PoolRoutes:
    """The handlers; each worker call is authenticated by its join token, each admin call by Access."""

    def __init__(self, pool: Pool, access: Access, limit: int, depth: int) -> None:
        self.pool = pool
        self.access = access
        self.limit = limit
        self.depth = depth

    async def worker_of(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not token:
            raise AuthenticationError(
                "Missing join token: send 'Authorization: Bearer <token>'.", code="missing_token"
            )
        worker = await self.pool.identify(token)
        if worker is None:
            raise AuthenticationError("Unknown or revoked join token.", code="invalid_join_token")
        return worker

    def worker_route(self, work: Work) -> Handler:
        from redis.exceptions import RedisError

        from ..server.access import read_json

        async def run(request: Request) -> Response:
            worker = "?"
            try:
                if self.pool.redis is None:
                    await self.pool.start()
                worker = await self.worker_of(request)
                body = await read_json(request, self.limit, self.depth)
                return _json(await work(request, worker, body))
            except ThriftyError as exc:
                self.pool.counts["rejected"] += 1
                client = request.client.host if request.client else "?"
                log.warning(
                    "pool: refused %s from worker %s (%s): %s", request.url.path, worker, client, exc.message
                )
                return _refusal(exc)
            except RedisError as exc:
                log.warning("pool: Redis failed serving %s: %s", request.url.path, exc)
                return _refusal(StorageUnavailable(_REDIS_DOWN))

        return run

    def admin_route(self, work: AdminWork, *, body: bool = False, status: int = 200) -> Handler:
        from redis.exceptions import RedisError

        from ..server.access import read_json

        async def run(request: Request) -> Response:
            try:
                await self.access.admin(request)
                if self.pool.redis is None:
                    await self.pool.start()
                data = await read_json(request, self.limit, self.depth) if body else {}
                return _json(await work(request, data), status)
            except ThriftyError as exc:
                return _refusal(exc)
            except RedisError as exc:
                log.warning("pool: Redis failed serving %s: %s", request.url.path, exc)
                return _refusal(StorageUnavailable(_REDIS_DOWN))

        return run

    # -- the workers' calls ------------------------------------------------------------

    async def join(self, request: Request, worker: str, body: dict[str, Any]) -> Any:
        return await self.pool.join(worker, protocol.parse_join(body))

    async def lease(self, request: Request, worker: str, body: dict[str, Any]) -> Any:
        wait, most, held = protocol.parse_lease(body, self.pool.settings.lease_wait)
        return await self.pool.lease(worker, wait, most, held)

    async def heartbeat(self, request: Request, worker: str, body: dict[str, Any]) -> Any:
        active, power, battery = protocol.parse_heartbeat(body)
        return await self.pool.heartbeat(worker, active, power, battery)

    async def result(self, request: Request, worker: str, body: dict[str, Any]) -> Any:
        task_id = str(request.path_params["task_id"])
        if not _TASK_ID.match(task_id):
            raise InvalidRequest("'task_id' must be a task id from a lease.", param="task_id")
        await self.pool.result(worker, task_id, protocol.parse_result(body))
        return {"accepted": True}

    async def release(self, request: Request, worker: str, body: dict[str, Any]) -> Any:
        return await self.pool.release(worker, protocol.parse_release(body))

    # -- the admins' calls -------------------------------------------------------------

    async def workers(self, request: Request, body: dict[str, Any]) -> Any:
        return await self.pool.overview()

    async def tokens(self, request: Request, body: dict[str, Any]) -> Any:
        return {"data": await self.pool.list_tokens()}

    async def create_token(self, request: Request, body: dict[str, Any]) -> Any:
        unknown = sorted(set(body) - {"name"})
        if unknown:
            raise InvalidRequest(f"Unknown field '{unknown[0]}'; expected name.", param=unknown[0])
        name = body.get("name")
        if not isinstance(name, str) or not _TOKEN_NAME.match(name):
            raise InvalidRequest(
                "'name' must be 1-64 letters, digits or _.:@- (starting with a letter or digit).",
                param="name",
            )
        return await self.pool.create_token(name)

    async def revoke_token(self, request: Request, body: dict[str, Any]) -> Any:
        return await self.pool.revoke_token(str(request.path_params["token_id"]))

    def routes(self) -> list[BaseRoute]:
        from starlette.routing import Route

        worker, admin = self.worker_route, self.admin_route
        return [
            Route("/pool/v1/join", worker(self.join), methods=["POST"]),
            Route("/pool/v1/lease", worker(self.lease), methods=["POST"]),
            Route("/pool/v1/heartbeat", worker(self.heartbeat), methods=["POST"]),
            Route("/pool/v1/tasks/{task_id}/result", worker(self.result), methods=["POST"]),
            Route("/pool/v1/release", worker(self.release), methods=["POST"]),
            Route("/admin/pool/workers", admin(self.workers), methods=["GET"]),
            # the same, for the dashboard's panel (its session cookie is scoped to /dashboard)
            Route("/dashboard/api/pool", admin(self.workers), methods=["GET"]),
            Route("/admin/pool/tokens", admin(self.tokens), methods=["GET"]),
            Route("/admin/pool/tokens", admin(self.create_token, body=True, status=201), methods=["POST"]),
            Route("/admin/pool/tokens/{token_id}", admin(self.revoke_token), methods=["DELETE"]),
        ]


def build_routes(pool: Pool, access: Access, limit: int, depth: int) -> list[BaseRoute]:
    return PoolRoutes(pool, access, limit, depth).routes()
