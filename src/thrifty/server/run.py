"""Run the gateway under uvicorn, with graceful shutdown on SIGTERM/SIGINT.

The connection layer (header limits and timeouts, keep-alive timeout, connection cap) is
``thrifty.server.protocol``; each server gets its own guard.
"""

from __future__ import annotations

import logging
import sys
import time

from ..config import Config
from ..errors import ConfigError


def raise_file_limit() -> tuple[int, int]:
    """Lift the soft open-file limit to the hard one: each connection holds a descriptor.

    Returns the (soft, hard) limits now in force; (-1, -1) where the platform has none.
    """
    try:
        import resource
    except ImportError:  # Windows
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # e.g. macOS refuses an unlimited soft limit
            pass
    return soft, hard


def serve(config: Config, *, replicas: int = 0, log_level: str = "info") -> int:
    import uvicorn

    from ..gateway import Gateway
    from .app import create_app
    from .protocol import ConnectionLimits, guarded_protocol

    started = time.perf_counter()
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if replicas:
        from ..balance.replicas import replica_config

        config = replica_config(config, replicas)
    soft, _ = raise_file_limit()
    limits = ConnectionLimits.from_server(config.server)
    if 0 < soft < limits.max_connections + 64:
        logging.getLogger("thrifty").warning(
            "server.max_connections is %d but the open-file limit is %d: raise `ulimit -n`",
            limits.max_connections, soft,
        )
    try:
        # Capability sections (routing, cache, tasks, ...) are parsed as the stack is built.
        gateway = Gateway(config)
        app = create_app(gateway)
    except ConfigError as exc:
        print(f"thrifty: invalid config: {exc.message}", file=sys.stderr)
        return 2
    host, port = config.server.host, config.server.port
    print(
        f"thrifty: serving {', '.join(gateway.models())} on http://{host}:{port}/v1 "
        f"(config: {config.source}; ready in the background, see /ready)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning" if log_level == "info" else log_level,
        access_log=False,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http=guarded_protocol(limits),
        timeout_graceful_shutdown=30,
        proxy_headers=False,  # thrifty does not read client addresses; skip the per-request rewrite
        server_header=False,
        lifespan="on",
    )
    server = uvicorn.Server(uvicorn_config)
    logging.getLogger("thrifty").info("startup took %.0f ms", (time.perf_counter() - started) * 1000)
    server.run()
    return 0
