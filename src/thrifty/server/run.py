"""Run the gateway under uvicorn, with graceful shutdown on SIGTERM/SIGINT.

The connection layer (header limits and timeouts, keep-alive timeout, connection cap) is
``thrifty.server.protocol``; each server gets its own guard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
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


def serve(config: Config, *, replicas: int = 0, log_level: str = "info", workers: int = 1) -> int:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if workers > 1:
        return _serve_workers(config, replicas=replicas, log_level=log_level, workers=workers)
    return _serve_one(config, replicas=replicas, log_level=log_level)


def _serve_one(
    config: Config,
    *,
    replicas: int = 0,
    log_level: str = "info",
    sock: socket.socket | None = None,
    index: int = 0,
) -> int:
    import uvicorn

    from ..gateway import Gateway
    from .app import create_app
    from .protocol import ConnectionLimits, guarded_protocol

    started = time.perf_counter()
    from ..balance.replicas import replica_config, wants_replicas

    if replicas or wants_replicas(config):
        config = replica_config(config, replicas)
    soft, _ = raise_file_limit()
    limits = ConnectionLimits.from_server(config.server)
    if 0 < soft < limits.max_connections + 64:
        logging.getLogger("thrifty").warning(
            "server.max_connections is %d but the open-file limit is %d: raise `ulimit -n`",
            limits.max_connections,
            soft,
        )
    try:
        # Capability sections (routing, cache, tasks, ...) are parsed as the stack is built.
        gateway = Gateway(config)
        app = create_app(gateway, resume_batches=index == 0)
    except ConfigError as exc:
        print(f"thrifty: invalid config: {exc.message}", file=sys.stderr)
        return 2
    host, port = config.server.host, config.server.port
    if index:
        print(f"thrifty: worker {index} serving on http://{host}:{port}/v1", file=sys.stderr, flush=True)
    else:
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
    # "startup" is process start to ready, logged by the observer once the models are loaded
    logging.getLogger("thrifty").debug("server built in %.0f ms", (time.perf_counter() - started) * 1000)
    server.run(sockets=[sock] if sock is not None else None)
    return 0


def _serve_workers(config: Config, *, replicas: int, log_level: str, workers: int) -> int:
    """N processes on one listening socket, supervised: a worker that dies is restarted.

    The socket is bound here and inherited, so the kernel spreads connections over the
    workers. Each worker builds its own gateway after the fork; the ledger and the cache
    files are shared through SQLite, limits and budgets through ``tenancy.redis_url``.
    SIGTERM/SIGINT reach every worker, which finish their requests and drain their ledgers.
    """
    import signal

    tenancy = config.sections.get("tenancy")
    shared = isinstance(tenancy, dict) and bool(tenancy.get("redis_url"))
    if config.server.keys_required and not shared:
        logging.getLogger("thrifty").warning(
            "--workers %d without tenancy.redis_url: each worker counts rate limits and budgets "
            "on its own, so a key's limits hold per worker, not in all",
            workers,
        )
    sock = socket.socket(socket.AF_INET6 if ":" in config.server.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.server.host, config.server.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: default signal handling, its own gateway and loop
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = _serve_one(config, replicas=replicas, log_level=log_level, sock=sock, index=index)
            finally:
                os._exit(code)
        children[pid] = index

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(workers):
        spawn(index)
    failures = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, -1)
        if not stopping and index >= 0:
            failures += 1
            logging.getLogger("thrifty").warning(
                "worker %d exited (status %d); starting it again", index, os.waitstatus_to_exitcode(status)
            )
            time.sleep(min(5.0, 0.2 * failures))
            spawn(index)
    sock.close()
    return 0
