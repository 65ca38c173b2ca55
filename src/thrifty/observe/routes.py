"""HTTP endpoints: /metrics, /v1/feedback, /dashboard (+ assets, login, stats JSON), /admin/alerts, /admin/learning.

Every route authenticates through the one :class:`~thrifty.server.access.Access`:
``/metrics`` needs an admin key unless ``server.public_metrics``; the dashboard's
data and ``/admin/alerts`` need an admin key (header, or the session cookie the
login form sets); feedback takes any key but reaches only the caller's own
responses. The dashboard page, its assets and its login form are public.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import InvalidRequest, NotFound, ThriftyError
from ..server.access import SESSION_COOKIE, SESSION_TTL_S, Access, Caller, read_body, read_json
from .feedback import Feedback, Signal, parse_feedback
from .stats import prometheus, snapshot

if TYPE_CHECKING:
    from . import Observer

log = logging.getLogger("thrifty.observe")

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "upstreams.js": "text/javascript; charset=utf-8",
    "pool.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "teams.js": "text/javascript; charset=utf-8",
    "learning.js": "text/javascript; charset=utf-8",
    "scaling.js": "text/javascript; charset=utf-8",
}
# the dashboard's responses never tell another site where the user came from
DASHBOARD_HEADERS = {"referrer-policy": "no-referrer", "x-content-type-options": "nosniff"}
MAX_LOGIN_BYTES = 4096


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("dashboard", "static", name).read_bytes()


def _error(exc: ThriftyError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status, headers={**exc.headers(), **(headers or {})})


def _no_cache(body: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, headers={"cache-control": "no-store", **(headers or {})})


Handler = Callable[[Request], Awaitable[Response]]


class Endpoints:
    def __init__(self, obs: Observer, access: Access) -> None:
        self.obs = obs
        self.access = access
        self.assets: dict[str, bytes] = {}
        server = obs.config.server
        self.public_metrics = server.public_metrics
        self.max_body = server.max_body_bytes
        self.max_depth = server.max_json_depth

    def admin_only(self, handler: Handler, headers: dict[str, str] | None = None) -> Handler:
        """``handler`` behind an admin key (any header the access reads, or a dashboard session)."""

        async def check(request: Request) -> Response:
            try:
                await self.access.admin(request)
            except ThriftyError as exc:
                return _error(exc, headers)
            return await handler(request)

        return check

    # Gauge sources read live layer state, so they are called on the event loop; the
    # counting and rendering run in a worker thread so a backlog never stalls the loop.

    async def metrics(self, request: Request) -> Response:
        text = await self.obs.read(prometheus, self.obs, self.obs.gauges())
        return PlainTextResponse(text, media_type=PROMETHEUS_TYPE)

    async def stats(self, request: Request) -> Response:
        body = await self.obs.read(snapshot, self.obs, self.obs.gauges())
        return _no_cache(body, DASHBOARD_HEADERS)

    async def layer_status(self, request: Request) -> Response:
        """``GET /dashboard/api/status``: each layer's live report, as ``/admin/status`` gives it,
        for dashboard panels (the session cookie is scoped to ``/dashboard``)."""
        return _no_cache(self.obs.reports(), DASHBOARD_HEADERS)

    async def learning(self, request: Request) -> Response:
        """``GET /admin/learning``: each learning layer's experiments, evidence and promotions."""
        return _no_cache({"object": "learning", "data": [layer.report() for layer in self.obs.learners]})

    async def alerts(self, request: Request) -> Response:
        alerts = await self.obs.read(self.obs.alerts, self.obs.gauges())
        return _no_cache({"alerts": [a.to_json() for a in alerts]})

    # -- the dashboard ---------------------------------------------------------------

    async def dashboard(self, request: Request) -> Response:
        return Response(
            self._load("index.html"),
            media_type="text/html; charset=utf-8",
            headers={"cache-control": "no-store", **DASHBOARD_HEADERS},
        )

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return _error(NotFound(f"no dashboard asset named {name!r}"), DASHBOARD_HEADERS)
        return Response(
            self._load(name),
            media_type=ASSETS[name],
            headers={"cache-control": "no-cache", **DASHBOARD_HEADERS},
        )

    def _load(self, name: str) -> bytes:
        if name not in self.assets:
            self.assets[name] = _asset(name)
        return self.assets[name]

    async def login(self, request: Request) -> Response:
        """``POST /dashboard/login`` (form field ``key``): an HttpOnly session cookie, then the page.

        The key travels once, in a POST body; the page then authenticates with
        a random server-side session token that expires, never with the key in
        a URL (where it would reach history, logs and Referer headers).
        """
        try:
            raw = await read_body(request, MAX_LOGIN_BYTES)
            key = (parse_qs(raw.decode("utf-8", "replace")).get("key") or [""])[0].strip()
            if not key:
                raise InvalidRequest("send the API key in the form field 'key'", param="key")
            _, token = await self.access.login(key)
        except ThriftyError as exc:
            reason = "admin" if exc.status == 403 else "failed"
            return RedirectResponse(
                f"../dashboard?login={reason}", status_code=303, headers=DASHBOARD_HEADERS
            )
        response = RedirectResponse("../dashboard", status_code=303, headers=DASHBOARD_HEADERS)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(SESSION_TTL_S),
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await self.access.logout(token)
        response = RedirectResponse("../dashboard", status_code=303, headers=DASHBOARD_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/dashboard", httponly=True, samesite="strict")
        return response

    # -- feedback ----------------------------------------------------------------------

    async def post_feedback(self, request: Request) -> Response:
        try:
            caller = await self.access.authenticate(request)
            body = await read_json(request, self.max_body, self.max_depth)
            return _no_cache(await self._store(caller, parse_feedback(body)))
        except ThriftyError as exc:
            return _error(exc)

    async def _request_of(self, caller: Caller, response_id: str) -> dict[str, Any]:
        """The ledger facts of a response the caller may see; 404 for another key's response."""
        found = await asyncio.to_thread(self.obs.lookup, response_id)
        missing = f"no request with id {response_id!r} in the ledger"
        if found is None:
            raise NotFound(missing, param="response_id")
        owner = found.pop("api_key", None)
        if not caller.owns(owner):
            raise NotFound(missing, param="response_id")
        return found

    async def _store(self, caller: Caller, fb: Feedback) -> dict[str, Any]:
        obs = self.obs
        found = await self._request_of(caller, fb.response_id)
        if obs.ledger is None:
            raise ThriftyError("the ledger is not open; the gateway is starting or stopping", status=503)
        values = {
            "response_id": fb.response_id,
            "ts": time.time(),
            "rating": fb.rating,
            "comment": fb.comment,
            "corrected_answer": fb.corrected_answer,
            "model": found.get("model"),
            "tier": found.get("tier"),
            "route": found.get("route"),
        }
        feedback_id = await asyncio.to_thread(obs.ledger.add_feedback, {**values, "owner": caller.key_id})
        with obs._lock:
            obs.feedback_ratings[fb.rating] = obs.feedback_ratings.get(fb.rating, 0) + 1
        for listener in obs._listeners:
            try:
                listener(fb.response_id, fb.rating)
            except Exception:  # one broken listener must not lose the rating
                log.exception("feedback listener failed")
        signal = Signal(
            response_id=fb.response_id,
            rating=fb.rating,
            owner=caller.key_id,
            comment=fb.comment,
            corrected_answer=fb.corrected_answer,
            user=fb.user,
            model=found.get("model"),
            route=found.get("route"),
        )
        learned: dict[str, Any] = {}
        for learner in obs.learners:
            try:
                learned.update(await learner.on_signal(signal) or {})
            except Exception:  # the rating is stored; a learner's failure must not undo that
                log.exception("signal listener failed")
        out = {"object": "feedback", "id": feedback_id, **values, "user": fb.user}
        if learned:
            out["learning"] = learned
        return out

    async def get_feedback(self, request: Request) -> Response:
        try:
            caller = await self.access.authenticate(request)
            response_id = request.path_params["response_id"]
            found = await self._request_of(caller, response_id)
        except ThriftyError as exc:
            return _error(exc)
        ledger = self.obs.ledger
        owner = caller.owner_filter()
        ratings = await asyncio.to_thread(ledger.feedback, response_id, owner) if ledger else []
        return _no_cache(
            {"object": "feedback.list", "response_id": response_id, "request": found, "data": ratings}
        )


def build_routes(obs: Observer, access: Access | None = None) -> list[BaseRoute]:
    """The observer's routes; ``access`` is the server's (one built from the config if absent)."""
    ep = Endpoints(obs, access or Access(obs.config.server))
    admin = ep.admin_only
    metrics = ep.metrics if ep.public_metrics else admin(ep.metrics)
    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/feedback", ep.post_feedback, methods=["POST"]),
        Route("/v1/feedback/{response_id:path}", ep.get_feedback, methods=["GET"]),
        Route("/dashboard", ep.dashboard, methods=["GET"]),
        Route("/dashboard/login", ep.login, methods=["POST"]),
        Route("/dashboard/logout", ep.logout, methods=["POST"]),
        Route("/dashboard/api/stats", admin(ep.stats, DASHBOARD_HEADERS), methods=["GET"]),
        Route("/dashboard/api/learning", admin(ep.learning, DASHBOARD_HEADERS), methods=["GET"]),
        Route("/dashboard/api/status", admin(ep.layer_status, DASHBOARD_HEADERS), methods=["GET"]),
        Route("/dashboard/static/{name}", ep.static, methods=["GET"]),
        Route("/admin/alerts", admin(ep.alerts), methods=["GET"]),
        Route("/admin/learning", admin(ep.learning), methods=["GET"]),
    ]
