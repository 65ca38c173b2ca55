"""``/admin/keys`` and ``/admin/teams``: the admin API over :class:`~.admin.KeyAdmin` (admin keys only).

POST   /admin/keys                 create (the secret is in this answer only)
GET    /admin/keys[?team=]         list
GET    /admin/keys/{id}            one key with its spend
PATCH  /admin/keys/{id}            change budget, limits, models, expiry
POST   /admin/keys/{id}/rotate     a new secret for the same key
DELETE /admin/keys/{id}            revoke (also POST /admin/keys/{id}/revoke)
POST   /admin/teams, GET /admin/teams, GET|PATCH /admin/teams/{name}
GET    /dashboard/api/teams        every team and key with spend, budget and limits (the team view)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ThriftyError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ..server.access import Access
    from .admin import KeyAdmin
    from .service import Tenancy

Handler = Callable[["Request"], Awaitable["Response"]]


def build_routes(
    admin: KeyAdmin, access: Access, tenancy: Tenancy, limit: int, depth: int
) -> list[BaseRoute]:
    from starlette.responses import Response
    from starlette.routing import Route

    from ..server.access import read_json

    def handler(
        work: Callable[[Request, dict[str, Any]], Any],
        *,
        body: bool = False,
        status: int = 200,
        reads: bool = False,
    ) -> Handler:
        async def run(request: Request) -> Response:
            try:
                await access.admin(request)
                data = await read_json(request, limit, depth) if body else {}
                result = await asyncio.to_thread(work, request, data)
                if not reads:
                    tenancy.forget()  # this replica sees its own change at once; others within cache_ttl
            except ThriftyError as exc:
                return Response(
                    orjson.dumps(exc.to_json()),
                    status_code=exc.status,
                    media_type="application/json",
                    headers=exc.headers(),
                )
            return Response(
                orjson.dumps(result),
                status_code=status,
                media_type="application/json",
                headers={"cache-control": "no-store"},
            )

        return run

    def key_id(request: Request) -> str:
        return str(request.path_params["key_id"])

    def team(request: Request) -> str:
        return str(request.path_params["team"])

    return [
        # under /dashboard so the dashboard's session cookie reaches it
        Route("/dashboard/api/teams", handler(lambda r, b: admin.overview(), reads=True), methods=["GET"]),
        Route(
            "/admin/keys", handler(lambda r, b: admin.create_key(b), body=True, status=201), methods=["POST"]
        ),
        Route(
            "/admin/keys", handler(lambda r, b: admin.list_keys(r.query_params.get("team"))), methods=["GET"]
        ),
        Route("/admin/keys/{key_id}", handler(lambda r, b: admin.get_key(key_id(r))), methods=["GET"]),
        Route(
            "/admin/keys/{key_id}",
            handler(lambda r, b: admin.update_key(key_id(r), b), body=True),
            methods=["PATCH"],
        ),
        Route("/admin/keys/{key_id}", handler(lambda r, b: admin.revoke_key(key_id(r))), methods=["DELETE"]),
        Route(
            "/admin/keys/{key_id}/revoke", handler(lambda r, b: admin.revoke_key(key_id(r))), methods=["POST"]
        ),
        Route(
            "/admin/keys/{key_id}/rotate", handler(lambda r, b: admin.rotate_key(key_id(r))), methods=["POST"]
        ),
        Route(
            "/admin/teams",
            handler(lambda r, b: admin.create_team(b), body=True, status=201),
            methods=["POST"],
        ),
        Route("/admin/teams", handler(lambda r, b: admin.list_teams()), methods=["GET"]),
        Route("/admin/teams/{team}", handler(lambda r, b: admin.get_team(team(r))), methods=["GET"]),
        Route(
            "/admin/teams/{team}",
            handler(lambda r, b: admin.update_team(team(r), b), body=True),
            methods=["PATCH"],
        ),
    ]
