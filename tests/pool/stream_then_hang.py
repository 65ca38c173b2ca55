"""A pool worker on the reference client that sends one chunk of a stream, then hangs (SIGKILL it)."""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from thrifty.pool.reference_worker import PoolClient, Send, serve


def work(task: dict[str, Any], send: Send) -> None:
    chunk = {
        "id": "chatcmpl-hang",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "hang",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "partial"}, "finish_reason": None}
        ],
    }
    send(chunks=[chunk])
    time.sleep(120)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--join", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    caps = {"models": [{"name": "smollm2", "n_ctx": 4096, "tokens_per_s": 5000.0}], "concurrency": 1}
    serve(PoolClient(args.join, args.token), caps, work, threading.Event())
