"""``/v1/responses``: the OpenAI Responses API over the same gateway as chat completions.

A request is translated to a chat request (:mod:`thrifty.translate.responses`)
and answered by ``Gateway.complete`` or ``Gateway.stream``, so routing, cache,
failover, budgets and the ledger apply unchanged. Stored responses (and the
conversations ``previous_response_id`` continues) live in
:class:`~thrifty.server.response_store.ResponseStore`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import InvalidRequest, ThriftyError
from ..translate.responses import (
    Item,
    ResponseStream,
    chat_body,
    input_items,
    response_object,
    responses_param,
)
from ..translate.responses_native import upstream_body
from ..types import ChatRequest, Chunk, Message
from ..validate import chat_request
from .app import (
    JSON,
    ClientLeft,
    Server,
    _EventStream,
    complete_watched,
    error_response,
    first_chunk,
    json_response,
    late_error,
)
from .response_store import ResponseStore

log = logging.getLogger("thrifty.server")


class ResponsesService:
    """The handlers of ``/v1/responses``; owns the response store."""

    def __init__(self, server: Server) -> None:
        self.server = server
        config = server.gateway.config.server
        self.store = ResponseStore(str(Path(config.data_dir) / "responses.db"), config.responses_ttl)
        # Whether any deployment takes Responses bodies as they are (options.responses: native).
        self.native = any(
            d.options.get("responses") == "native"
            for group in server.gateway.config.models
            for d in group.deployments
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/responses", self.create, methods=["POST"]),
            Route("/v1/responses/{response_id}", self.retrieve, methods=["GET"]),
            Route("/v1/responses/{response_id}", self.delete, methods=["DELETE"]),
            Route("/v1/responses/{response_id}/input_items", self.list_input_items, methods=["GET"]),
        ]

    def degraded(self) -> list[str]:
        return self.store.degraded()

    def close(self) -> None:
        self.store.close()

    async def create(self, request: Request) -> Response:
        server = self.server
        try:
            caller = await server.access.authenticate(request)
            body = await server.read_json(request)
            store = body.get("store")
            store = True if store is None else store
            if not isinstance(store, bool):
                raise InvalidRequest("'store' must be a boolean.", param="store")
            history: list[Message] = []
            earlier: list[Item] = []  # the items of the conversation a previous response ends
            previous = body.get("previous_response_id")
            if previous is not None:
                if not isinstance(previous, str) or not previous:
                    raise InvalidRequest(
                        "'previous_response_id' must be a response id.", param="previous_response_id"
                    )
                before = await self.store.get(previous, caller.key_id)
                history = before.conversation
                earlier = [*before.items, *before.response["output"]]
            translated = chat_body(body, history)
            try:
                req = chat_request(translated.chat, server.header_options(request))
            except InvalidRequest as exc:
                exc.param = responses_param(exc.param)
                raise
            server.attribute(req, caller, body.get("user"))
            owner = caller.key_id if store else None
            items = [*earlier, *input_items(body["input"], _response_id(req))] if store else []
            if self.native:
                req.native = upstream_body(body, earlier)
            if req.stream:
                return await self._stream(req, body, items, owner, request)
            answer = await complete_watched(server.gateway, req, request.receive)
        except ClientLeft:
            return Response(status_code=499)
        except ThriftyError as exc:
            return error_response(exc)
        if answer.native is not None:  # the upstream's own response object, under thrifty's id
            response = native_response(answer.native, body, _response_id(req))
        else:
            response = response_object(answer.body, body, _response_id(req), int(time.time()))
        encoded = orjson.dumps(response)
        if owner is not None:
            self.store.put(response, items, owner, encoded)
        return Response(encoded, media_type=JSON, headers=server.answer_headers(req))

    async def _stream(
        self,
        req: ChatRequest,
        body: Mapping[str, Any],
        items: list[Item],
        owner: str | None,
        request: Request,
    ) -> Response:
        chunks = self.server.gateway.stream(req).__aiter__()
        try:
            first = await first_chunk(chunks, request.receive)
        except ClientLeft:
            return Response(status_code=499)
        events = ResponseStream(body, _response_id(req), int(time.time()))
        headers = {**self.server.answer_headers(req), "cache-control": "no-cache"}
        return _EventStream(
            self._events(events, first, chunks, items, owner),
            media_type="text/event-stream",
            headers=headers,
        )

    async def _events(
        self,
        events: ResponseStream,
        first: Chunk | None,
        rest: AsyncIterator[Chunk],
        items: list[Item],
        owner: str | None,
    ) -> AsyncIterator[bytes]:
        """The Responses event sequence; an error after the first byte ends it with ``response.failed``."""
        try:
            out = events.start()
            if first is not None:
                out.extend(events.feed(first))
            yield _frame(out)
            async for chunk in rest:
                out = events.feed(chunk)
                if out:
                    yield _frame(out)
            yield _frame(events.finish())
        except Exception as exc:
            yield _frame(events.failed(late_error(exc, "responses").to_json()))
            return
        finally:
            with contextlib.suppress(Exception):
                await rest.aclose()  # type: ignore[attr-defined]
        if owner is not None:
            self.store.put(events.response, items, owner)

    async def retrieve(self, request: Request) -> Response:
        try:
            caller = await self.server.access.authenticate(request)
            stored = await self.store.get(request.path_params["response_id"], caller.key_id)
        except ThriftyError as exc:
            return error_response(exc)
        return json_response(stored.response)

    async def list_input_items(self, request: Request) -> Response:
        """The items a stored response was made from, the conversation before it included, a page at a time."""
        try:
            caller = await self.server.access.authenticate(request)
            query = request.query_params
            limit, order, after = _page_params(query.get("limit"), query.get("order"), query.get("after"))
            stored = await self.store.get(request.path_params["response_id"], caller.key_id)
            page = items_page(stored.items, limit=limit, order=order, after=after)
        except ThriftyError as exc:
            return error_response(exc)
        return json_response(page)

    async def delete(self, request: Request) -> Response:
        try:
            caller = await self.server.access.authenticate(request)
            response_id = request.path_params["response_id"]
            await self.store.delete(response_id, caller.key_id)
        except ThriftyError as exc:
            return error_response(exc)
        return json_response({"id": response_id, "object": "response", "deleted": True})


def native_response(upstream: dict[str, Any], body: Mapping[str, Any], response_id: str) -> dict[str, Any]:
    """An upstream's response as the client's: thrifty's id, and what thrifty answered for itself."""
    return {
        **upstream,
        "id": response_id,
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True) is not False,
    }


def _page_params(limit: str | None, order: str | None, after: str | None) -> tuple[int, str, str | None]:
    if limit is None:
        count = 20
    elif limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 100:
        count = int(limit)
    else:
        raise InvalidRequest(f"'limit' must be an integer from 1 to 100, got {limit!r}.", param="limit")
    if order is None:
        order = "desc"
    elif order not in ("asc", "desc"):
        raise InvalidRequest(f"'order' must be 'asc' or 'desc', got {order!r}.", param="order")
    return count, order, after


def items_page(items: list[Item], *, limit: int, order: str, after: str | None) -> dict[str, Any]:
    """One page of OpenAI's list shape: ``data``, ``first_id``, ``last_id``, ``has_more``."""
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:  # an id that is not there (say, of an item since expired) ends the list
        start = next((i + 1 for i, item in enumerate(ordered) if item.get("id") == after), len(ordered))
    page = ordered[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + limit < len(ordered),
    }


def _response_id(req: ChatRequest) -> str:
    """``resp_`` and the ledger's request id, so a stored response names its ledger row."""
    return "resp_" + req.trace.request_id.removeprefix("chatcmpl-")


_PREFIXES: dict[str, bytes] = {}


def _frame(events: list[dict[str, Any]]) -> bytes:
    """Server-sent events, each named (``event:``) and carrying its JSON (``data:``)."""
    out = []
    for event in events:
        kind = event["type"]
        prefix = _PREFIXES.get(kind)
        if prefix is None:
            prefix = _PREFIXES[kind] = b"event: " + kind.encode() + b"\ndata: "
        out.append(prefix + orjson.dumps(event) + b"\n\n")
    return b"".join(out)
