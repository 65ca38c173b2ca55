"""A tiny app that records one ledger event per request; run by test_sigterm.py.

Usage: python sigterm_app.py PORT DATA_DIR
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from thrifty.config import parse_config
from thrifty.observe import Observer, RequestEvent

port, data_dir = int(sys.argv[1]), sys.argv[2]
config = parse_config(
    {
        "server": {"data_dir": data_dir},
        # flush only on close, so the test proves the drain on SIGTERM
        "ledger": {"flush_ms": 600_000, "batch_rows": 1_000_000},
        "models": [{"name": "fast", "deployments": [{"provider": "local", "model": "smollm2"}]}],
    }
)
observer = Observer(config)


async def work(request: Request) -> JSONResponse:
    started = time.perf_counter()
    await asyncio.sleep(0.005)  # an upstream call
    rid = request.query_params["id"]
    observer.record(
        RequestEvent(
            request_id=rid,
            ts=time.time(),
            model="fast",
            deployment="fast/local/smollm2",
            stream=False,
            status=200,
            error_type=None,
            prompt_tokens=10,
            completion_tokens=5,
            cached_tokens=0,
            latency_s=time.perf_counter() - started,
            ttft_s=None,
            overhead_s=0.0001,
            attempts=1,
            api_key="",
            tenant="",
        )
    )
    return JSONResponse({"id": rid})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await observer.start()
    yield
    await observer.aclose()


app = Starlette(routes=[Route("/work", work, methods=["POST"])] + observer.routes(), lifespan=lifespan)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
