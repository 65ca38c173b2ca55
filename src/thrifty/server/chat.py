"""``thrifty chat``: one prompt or an interactive session, streamed to the terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from ..types import Message


def run_chat(args: argparse.Namespace) -> int:
    talk = _remote(args) if args.url else _in_process(args)
    history: list[Message] = []
    if args.system:
        history.append({"role": "system", "content": args.system})
    try:
        if args.prompt is not None:
            history.append({"role": "user", "content": args.prompt})
            _print_stream(talk(history))
            return 0
        print("thrifty chat: type a message, an empty line or Ctrl-D to quit.", file=sys.stderr)
        while True:
            try:
                line = input("> ")
            except EOFError:
                return 0
            if not line.strip():
                return 0
            history.append({"role": "user", "content": line})
            answer = _print_stream(talk(history))
            history.append({"role": "assistant", "content": answer})
    except ChatFailed as exc:
        print(f"thrifty: {exc}", file=sys.stderr)
        return 1


class ChatFailed(Exception):
    pass


def _print_stream(pieces: Iterator[str]) -> str:
    out = []
    for piece in pieces:
        out.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(out)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"max_tokens": args.max_tokens}
    if args.temperature is not None:
        params["temperature"] = args.temperature
    return params


def _in_process(args: argparse.Namespace) -> Any:
    from ..config import default_config, load_config
    from ..errors import ThriftyError
    from ..gateway import Gateway

    config = load_config(args.config) if args.config else default_config()
    gateway = Gateway(config, observe=False)
    model = args.model or gateway.models()[0]

    def talk(history: list[Message]) -> Iterator[str]:
        try:
            yield from gateway.chat_stream_sync(model, list(history), **_params(args))
        except ThriftyError as exc:
            raise ChatFailed(exc.message) from None

    return talk


def _remote(args: argparse.Namespace) -> Any:
    base = args.url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    key = args.api_key or os.environ.get("THRIFTY_API_KEY", "")

    def talk(history: list[Message]) -> Iterator[str]:
        body: dict[str, Any] = {"messages": history, "stream": True, **_params(args)}
        body["model"] = args.model or _first_model(base, key)
        request = urllib.request.Request(
            base + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
        )
        try:
            with urllib.request.urlopen(request) as response:
                for raw in response:
                    line = raw.decode().strip()
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        raise ChatFailed(chunk["error"].get("message", "stream failed"))
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text
        except urllib.error.HTTPError as exc:
            raise ChatFailed(_error_message(exc)) from None
        except urllib.error.URLError as exc:
            raise ChatFailed(f"cannot reach {base}: {exc.reason}") from None

    return talk


def _first_model(base: str, key: str) -> str:
    request = urllib.request.Request(base + "/models", headers={"authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request) as response:
            models = json.load(response)["data"]
    except urllib.error.HTTPError as exc:
        raise ChatFailed(_error_message(exc)) from None
    except urllib.error.URLError as exc:
        raise ChatFailed(f"cannot reach {base}: {exc.reason}") from None
    if not models:
        raise ChatFailed("the gateway serves no models")
    return str(models[0]["id"])


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return f"{exc.code}: {json.load(exc)['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code}"
