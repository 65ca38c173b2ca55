"""A pool worker in the Python standard library only: the protocol of ``docs/pool-protocol.md``.

Small enough to port to a phone or a board. It joins with a token, heartbeats
from a thread, leases tasks by long poll (outbound HTTP only, so it works behind
NAT), runs each with ``work(task, send)`` and sends the result. SIGTERM drains:
no new tasks, the ones held are finished, then it leaves. The answer here is an
echo; ``thrifty worker`` is this loop with llama.cpp as ``work``.

    python reference_worker.py --join http://gateway:8000 --token T --model echo
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import signal
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

Send = Callable[..., None]


class PoolError(Exception):
    """The gateway refused a message: its HTTP status and OpenAI error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class PoolClient:
    """The five calls of the protocol, JSON over HTTP/1.1 on a few kept-alive connections."""

    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token, self.timeout = token, timeout
        self.idle: list[http.client.HTTPConnection] = []
        self.lock = threading.Lock()

    def call(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        with self.lock:
            conn = self.idle.pop() if self.idle else http.client.HTTPConnection(self.host, self.port)
        conn.timeout = timeout or self.timeout
        if conn.sock is not None:
            conn.sock.settimeout(conn.timeout)
        headers = {"authorization": f"Bearer {self.token}", "content-type": "application/json"}
        try:
            conn.request("POST", path, json.dumps(body), headers)
            response = conn.getresponse()
            data = json.loads(response.read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError):
            conn.close()
            raise ConnectionError(f"the gateway did not answer {path}") from None
        with self.lock:
            self.idle.append(conn)
        if response.status >= 400:
            error = data.get("error") or {}
            raise PoolError(response.status, str(error.get("code")), str(error.get("message")))
        return dict(data)

    def join(self, capabilities: dict[str, Any]) -> dict[str, Any]:
        return self.call("/pool/v1/join", {"capabilities": capabilities})

    def lease(self, wait: float, most: int, held: list[str]) -> dict[str, Any]:
        return self.call("/pool/v1/lease", {"wait": wait, "max": most, "held": held}, timeout=wait + 10)

    def heartbeat(self, active: int) -> dict[str, Any]:
        return self.call("/pool/v1/heartbeat", {"active": active})

    def result(self, task_id: str, lease: str, **fields: Any) -> dict[str, Any]:
        return self.call(f"/pool/v1/tasks/{task_id}/result", {"lease": lease, **fields})

    def release(self, leave: bool) -> dict[str, Any]:
        return self.call("/pool/v1/release", {"leave": leave})


def send_for(client: PoolClient, task: dict[str, Any], patience: float = 60.0) -> Send:
    """``send(**fields)`` for one task: retries while the gateway is away; raises PoolError when
    the task is no longer this worker's (403 not_lease_holder, 404, 409 task_done)."""

    def send(**fields: Any) -> None:
        deadline = time.monotonic() + patience
        while True:
            try:
                client.result(task["task_id"], task["lease"], **fields)
                return
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    return send


def serve(
    client: PoolClient,
    capabilities: dict[str, Any],
    work: Callable[[dict[str, Any], Send], None],
    stop: threading.Event,
    concurrency: int = 1,
) -> None:
    """Join, then lease and work until ``stop`` is set; then drain and leave."""
    info = _join(client, capabilities, stop)
    held: dict[str, dict[str, Any]] = {}
    slots = threading.Semaphore(concurrency)
    finished = threading.Event()  # heartbeats go on while draining

    def beat() -> None:
        while not finished.wait(float(info.get("heartbeat", 1.0))):
            with contextlib.suppress(ConnectionError, PoolError):  # the lease loop rejoins when it must
                client.heartbeat(len(held))

    def run(task: dict[str, Any]) -> None:
        try:
            work(task, send_for(client, task))
        except (PoolError, ConnectionError):
            pass  # the task moved on without us, or the gateway is gone for good
        finally:
            held.pop(task["task_id"], None)
            slots.release()

    def drain_at_once() -> None:  # no new tasks from the moment we are told to stop
        if stop.wait() and not finished.is_set():
            with contextlib.suppress(ConnectionError, PoolError):
                client.release(leave=False)

    threading.Thread(target=beat, daemon=True).start()
    threading.Thread(target=drain_at_once, daemon=True).start()
    while not stop.is_set():
        slots.acquire()
        slots.release()
        free = concurrency - len(held)
        try:
            got = client.lease(min(5.0, float(info["lease_wait"])), max(1, free), list(held))
        except PoolError as exc:
            if exc.code == "rejoin":
                info = _join(client, capabilities, stop)
            else:
                time.sleep(0.5)
            continue
        except ConnectionError:
            time.sleep(0.2)
            continue
        for task in got["tasks"]:
            slots.acquire()
            held[task["task_id"]] = task
            threading.Thread(target=run, args=(task,), daemon=True).start()
    _drain(client, held)
    finished.set()


def _join(client: PoolClient, capabilities: dict[str, Any], stop: threading.Event) -> dict[str, Any]:
    while True:
        try:
            return client.join(capabilities)
        except ConnectionError:
            if stop.wait(0.5):
                raise
            continue


def _drain(client: PoolClient, held: dict[str, dict[str, Any]]) -> None:
    """Finish the tasks held (no new ones come), then leave."""
    with contextlib.suppress(ConnectionError, PoolError):
        client.release(leave=False)
    while held:
        time.sleep(0.05)
    with contextlib.suppress(ConnectionError, PoolError):
        client.release(leave=True)


def echo(task: dict[str, Any], send: Send) -> None:
    """The reference answer: the last user message, echoed."""
    request = task["request"]
    text = str(request["messages"][-1].get("content", ""))
    words = len(text.split())
    send(
        done=True,
        response={
            "id": "chatcmpl-" + task["task_id"],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": words, "completion_tokens": words, "total_tokens": 2 * words},
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A reference pool worker (echoes the prompt).")
    parser.add_argument("--join", required=True, help="the gateway, e.g. http://gateway:8000")
    parser.add_argument("--token", required=True, help="this worker's join token")
    parser.add_argument("--model", default="echo", help="the model name to serve")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    caps = {"models": [{"name": args.model, "n_ctx": 8192, "tokens_per_s": 1000.0}], "concurrency": 4}
    serve(PoolClient(args.join, args.token), caps, echo, stop, concurrency=4)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
