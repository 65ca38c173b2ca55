"""The Python floor: a featureless aiohttp + uvloop proxy that only forwards bytes.

No auth, no validation, no routing, no ledger: it reads the client's body, posts it to one
upstream over a pooled keep-alive session, and sends the upstream's status and bytes back
(streams are relayed chunk by chunk as they arrive). Whatever thrifty adds on top of this
is the cost of its features; `benchmarks/gateway_overhead.py` runs both in the same session.

    .venv/bin/python benchmarks/bare_proxy.py --port 9000 --upstream http://127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import uvloop
from aiohttp import web


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    async def open_session(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        app["session"] = aiohttp.ClientSession(upstream, connector=connector, auto_decompress=False)

    async def close_session(app: web.Application) -> None:
        await app["session"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session: aiohttp.ClientSession = app["session"]
        headers = {"content-type": request.headers.get("content-type", "application/json")}
        async with session.post(request.path, data=body, headers=headers) as up:
            content_type = up.headers.get("content-type", "application/json")
            if not content_type.startswith("text/event-stream"):
                return web.Response(
                    body=await up.read(),
                    status=up.status,
                    content_type=None,
                    headers={"content-type": content_type},
                )
            out = web.StreamResponse(status=up.status, headers={"content-type": content_type})
            await out.prepare(request)
            async for piece in up.content.iter_any():
                await out.write(piece)
            await out.write_eof()
            return out

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_post("/chat/completions", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL without /v1, e.g. http://127.0.0.1:8001")
    args = parser.parse_args()
    uvloop.install()
    asyncio.set_event_loop(asyncio.new_event_loop())
    web.run_app(make_app(args.upstream), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
