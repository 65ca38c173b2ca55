"""HTTP endpoints: /metrics, /v1/feedback, /dashboard (+ assets, stats JSON), /admin/alerts."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import AuthenticationError, InvalidRequest, NotFound, ThriftyError
from .feedback import parse_feedback
from .stats import prometheus, snapshot

if TYPE_CHECKING:
    from . import Observer

log = logging.getLogger("thrifty.observe")

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("dashboard", "static", name).read_bytes()


def _error(exc: ThriftyError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=exc.headers())


def _no_cache(body: Any) -> JSONResponse:
    return JSONResponse(body, headers={"cache-control": "no-store"})


Handler = Callable[[Request], Awaitable[Response]]


class Endpoints:
    def __init__(self, obs: Observer) -> None:
        self.obs = obs
        self.assets: dict[str, bytes] = {}
        self.keys = tuple(k.encode() for k in obs.config.server.api_keys)

    def guarded(self, handler: Handler) -> Handler:
        """With API keys configured, the data endpoints need one (the page and assets do not)."""
        if not self.keys:
            return handler

        async def check(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return _error(AuthenticationError(
                    "Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key"
                ))
            if not any(hmac.compare_digest(token.strip().encode(), k) for k in self.keys):
                return _error(AuthenticationError("Incorrect API key provided."))
            return await handler(request)

        return check

    # Gauge sources read live layer state, so they are called on the event loop; the
    # counting and rendering run in a worker thread so a backlog never stalls the loop.

    async def metrics(self, request: Request) -> Response:
        text = await asyncio.to_thread(prometheus, self.obs, self.obs.gauges())
        return PlainTextResponse(text, media_type=PROMETHEUS_TYPE)

    async def stats(self, request: Request) -> Response:
        return _no_cache(await asyncio.to_thread(snapshot, self.obs, self.obs.gauges()))

    async def alerts(self, request: Request) -> Response:
        alerts = await asyncio.to_thread(self.obs.alerts, self.obs.gauges())
        return _no_cache({"alerts": [a.to_json() for a in alerts]})

    async def dashboard(self, request: Request) -> Response:
        return Response(self._load("index.html"), media_type="text/html; charset=utf-8")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return _error(NotFound(f"no dashboard asset named {name!r}"))
        return Response(self._load(name), media_type=ASSETS[name], headers={"cache-control": "no-cache"})

    def _load(self, name: str) -> bytes:
        if name not in self.assets:
            self.assets[name] = _asset(name)
        return self.assets[name]

    async def post_feedback(self, request: Request) -> Response:
        try:
            try:
                body = json.loads(await request.body())
            except ValueError as exc:
                raise InvalidRequest(f"the body is not valid JSON: {exc}") from exc
            return _no_cache(await self._store(parse_feedback(body)))
        except ThriftyError as exc:
            return _error(exc)

    async def _store(self, fb: Any) -> dict[str, Any]:
        obs = self.obs
        found = await asyncio.to_thread(obs.lookup, fb.response_id)
        if found is None:
            raise NotFound(f"no request with id {fb.response_id!r} in the ledger", param="response_id")
        if obs.ledger is None:
            raise ThriftyError("the ledger is not open; the gateway is starting or stopping", status=503)
        values = {
            "response_id": fb.response_id, "ts": time.time(), "rating": fb.rating, "comment": fb.comment,
            "corrected_answer": fb.corrected_answer, "model": found.get("model"),
            "tier": found.get("tier"), "route": found.get("route"),
        }
        feedback_id = await asyncio.to_thread(obs.ledger.add_feedback, values)
        with obs._lock:
            obs.feedback_ratings[fb.rating] = obs.feedback_ratings.get(fb.rating, 0) + 1
        for listener in obs._listeners:
            try:
                listener(fb.response_id, fb.rating)
            except Exception:  # one broken listener must not lose the rating
                log.exception("feedback listener failed")
        return {"object": "feedback", "id": feedback_id, **values}

    async def get_feedback(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        obs = self.obs
        found = await asyncio.to_thread(obs.lookup, response_id)
        if found is None:
            return _error(NotFound(f"no request with id {response_id!r} in the ledger", param="response_id"))
        ratings = await asyncio.to_thread(obs.ledger.feedback, response_id) if obs.ledger else []
        return _no_cache({"object": "feedback.list", "response_id": response_id, "request": found, "data": ratings})


def build_routes(obs: Observer) -> list[BaseRoute]:
    ep = Endpoints(obs)
    guard = ep.guarded
    return [
        Route("/metrics", guard(ep.metrics), methods=["GET"]),
        Route("/v1/feedback", guard(ep.post_feedback), methods=["POST"]),
        Route("/v1/feedback/{response_id:path}", guard(ep.get_feedback), methods=["GET"]),
        Route("/dashboard", ep.dashboard, methods=["GET"]),
        Route("/dashboard/api/stats", guard(ep.stats), methods=["GET"]),
        Route("/dashboard/static/{name}", ep.static, methods=["GET"]),
        Route("/admin/alerts", guard(ep.alerts), methods=["GET"]),
    ]
