"""OpenAI-compatible chat: OpenAI, DeepSeek, xAI, Mistral, vLLM, llama-server, Ollama.

The translation is nearly the identity, kept in pure functions
(:func:`request_body`, :func:`parse_response`, :func:`parse_chunk`); the
:class:`OpenAIBackend` only adds HTTP through :mod:`.http` and bookkeeping.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

import orjson

from ..config import Deployment
from ..errors import ConfigError, UpstreamConnectionError, UpstreamError
from ..translate.responses_native import EventChunks, chat_completion
from ..transport import HttpRequest, Transport
from ..types import ChatRequest, ChatResponse, Chunk, Message, Piece, Trace, Usage, usage_chunk
from .estimate import CHARS_PER_TOKEN, estimate_tokens, estimate_usage
from .http import (
    HttpClient,
    build_body,
    deployment_transport,
    error_summary,
    extra_headers,
    option_mapping,
    secrets_in,
    timeouts_for,
)
from .passthrough import Passthrough

# --------------------------------------------------------------------------- translation


def remote_backend(url: str, api_key: str | None = None, timeout: float = 600.0) -> OpenAIBackend:
    """A backend for any OpenAI-compatible server (a running thrifty gateway, say) that
    sends each request's own model name: what ``--url`` means on the command line."""
    base = url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return OpenAIBackend(
        Deployment(name=base, provider="openai", model="*", api_base=base, api_key=api_key, timeout=timeout)
    )


def request_body(
    request: ChatRequest,
    model: str,
    *,
    stream: bool,
    defaults: Mapping[str, Any] | None = None,
    stream_usage: bool = True,
) -> dict[str, Any]:
    """The upstream JSON body: the client's fields, the deployment's model id, usage asked for."""
    body: dict[str, Any] = dict(defaults or {})
    body.update(request.extra)
    body.update(request.params)
    body["model"] = model
    body["messages"] = request.messages
    if stream:
        options = body.pop("stream_options", None)
        body["stream"] = True
        if stream_usage:
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def output_text(message: Mapping[str, Any]) -> str:
    """Content plus tool-call arguments of a message or delta: what was generated."""
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        text += str(function.get("name") or "") + str(function.get("arguments") or "")
    return text


def parse_response(data: Any, messages: Iterable[Message]) -> tuple[ChatResponse, bool]:
    """The upstream's ``chat.completion`` as a response; True when usage had to be estimated."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise UpstreamError("the upstream's answer is not a chat completion")
    if data.get("usage"):
        return ChatResponse(body=data, usage=Usage.from_json(data["usage"])), False
    choices = data["choices"]
    message = (choices[0].get("message") or {}) if choices and isinstance(choices[0], dict) else {}
    usage = estimate_usage(messages, output_text(message))
    data["usage"] = usage.to_json()
    return ChatResponse(body=data, usage=usage), True


def parse_chunk(data: Any, secrets: Iterable[str] = ()) -> tuple[Chunk | None, Usage | None]:
    """One SSE ``data`` object: the chunk to forward (None if it has no choices) and any usage."""
    if not isinstance(data, dict):
        raise UpstreamError("the upstream sent a malformed stream chunk")
    if data.get("error") is not None:
        message, code = error_summary(orjson.dumps(data), secrets)
        raise UpstreamError(f"upstream stream error: {message}", code=code)
    raw_usage = data.pop("usage", None)
    usage = Usage.from_json(raw_usage) if isinstance(raw_usage, dict) and raw_usage else None
    return (data if data.get("choices") else None), usage


def parse_embeddings(data: Any, texts: list[str]) -> tuple[list[list[float]], int]:
    """Vectors in input order and the tokens billed (estimated if not reported)."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != len(texts):
        raise UpstreamError("the upstream's answer is not an embeddings list for every input")
    ordered = sorted(items, key=lambda item: int(item.get("index", 0)))
    vectors = [[float(x) for x in item["embedding"]] for item in ordered]
    usage = data.get("usage") or {}
    tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
    return vectors, tokens or sum(estimate_tokens(t) for t in texts)


# --------------------------------------------------------------------------- backend


def generated_chars(chunk: Chunk) -> int:
    """Characters of generated text in a stream chunk (content and tool-call arguments)."""
    chars = 0
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if delta:
            content = delta.get("content")
            if content.__class__ is str:
                chars += len(content)
            if delta.get("tool_calls"):
                chars += len(output_text(delta)) - (len(content) if content.__class__ is str else 0)
    return chars


class _Tally:
    """What a stream has shown so far, for the closing usage chunk: counts, no copies of text."""

    __slots__ = ("trace", "id", "model", "chars", "finished", "usage")

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.id = ""
        self.model = ""
        self.chars = 0
        self.finished = False
        self.usage: Usage | None = None

    def see(self, chunk: Chunk) -> None:
        if not self.id:
            self.id = str(chunk.get("id") or "")
            self.model = str(chunk.get("model") or "")
        generated = generated_chars(chunk)
        if generated:
            self.chars += generated
            if self.trace.ttft_s is None:
                self.trace.ttft_s = time.perf_counter() - self.trace.started
        for choice in chunk["choices"]:
            if choice.get("finish_reason"):
                self.finished = True


class OpenAIBackend:
    """A deployment reached over the OpenAI chat-completions HTTP API."""

    def __init__(self, deployment: Deployment, transport: Transport | None = None) -> None:
        if not deployment.api_base:
            raise ConfigError(f"deployment {deployment.name!r}: an OpenAI-compatible provider needs api_base")
        self.deployment = deployment
        self.name = deployment.name
        self._base = deployment.api_base.rstrip("/")
        self._defaults = option_mapping(deployment, "extra_body")
        # Some OpenAI-compatible servers refuse stream_options; without it usage is estimated.
        self._stream_usage = deployment.options.get("stream_usage", True)
        if not isinstance(self._stream_usage, bool):
            raise ConfigError(f"deployment {deployment.name!r}: options.stream_usage must be true or false")
        # options.responses: native sends /v1/responses bodies to the upstream's own /responses
        native = deployment.options.get("responses", "translate")
        if native not in ("native", "translate"):
            raise ConfigError(
                f"deployment {deployment.name!r}: options.responses must be native or translate"
            )
        self._native = native == "native"
        self._headers = {"content-type": "application/json", **extra_headers(deployment)}
        # options.auth_header: where the key goes ("api-key" on Azure); a bearer token by default
        auth_header = deployment.options.get("auth_header", "authorization")
        if not isinstance(auth_header, str) or not auth_header:
            raise ConfigError(f"deployment {deployment.name!r}: options.auth_header must be a header name")
        if deployment.api_key:
            bearer = auth_header.lower() == "authorization"
            self._headers[auth_header.lower()] = (
                f"Bearer {deployment.api_key}" if bearer else deployment.api_key
            )
        # options.query: parameters on every URL (Azure's api-version)
        query = option_mapping(deployment, "query")
        self._query = "?" + urlencode({str(k): str(v) for k, v in query.items()}) if query else ""
        self._secrets = secrets_in(self._headers)
        self._parse_chunk = functools.partial(parse_chunk, secrets=self._secrets)
        self._timeouts = timeouts_for(deployment)
        self._http = HttpClient(transport if transport is not None else deployment_transport(deployment))

    def _model(self, request: ChatRequest) -> str:
        """The deployment's model id; ``*`` passes the client's model name through."""
        return request.model if self.deployment.model == "*" else self.deployment.model

    def _request(self, path: str, body: bytes) -> HttpRequest:
        return HttpRequest(self._base + path + self._query, body, self._headers, self._timeouts)

    def _chat(self, request: ChatRequest, *, stream: bool) -> HttpRequest:
        model = self._model(request)
        body = build_body(
            self.name,
            lambda: request_body(
                request, model, stream=stream, defaults=self._defaults, stream_usage=self._stream_usage
            ),
        )
        return self._request("/chat/completions", body)

    def _responses(self, request: ChatRequest, native: dict[str, Any], *, stream: bool) -> HttpRequest:
        model = self._model(request)
        body = build_body(self.name, lambda: {**native, "model": model, "stream": stream})
        return self._request("/responses", body)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        request.trace.deployment = self.name
        if request.native is not None and self._native:
            answer = await self._http.post_json(
                self._responses(request, request.native, stream=False), request.trace
            )
            completion, usage = chat_completion(answer)
            return ChatResponse(body=completion, usage=usage, native=answer)
        data = await self._http.post_json(self._chat(request, stream=False), request.trace)
        response, estimated = parse_response(data, request.messages)
        if estimated:
            request.trace.usage_estimated = True
        return response

    def stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        """The answer's chunks; its upstream's bytes (:class:`.passthrough.Passthrough`)
        when the request allows it (``raw_stream``)."""
        return self._raw_stream(request) if request.raw_stream else self._parsed_stream(request)

    async def _raw_stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        trace = request.trace
        trace.deployment = self.name
        forward = Passthrough(trace.request_id, self._parse_chunk)
        chars = 0
        reads = self._http.body(self._chat(request, stream=True), trace)
        async with contextlib.aclosing(reads):
            async for piece in reads:
                events = forward.feed(piece)  # after [DONE]: None, read on so the connection is reused
                if events is not None:
                    chars += events.chars
                    yield events
        events = forward.flush()
        if events is not None:
            chars += events.chars
            yield events
        if not forward.done and not forward.finished:
            raise UpstreamConnectionError("the upstream closed the stream before it finished")
        yield self._closing(request, forward.usage, chars, forward.model)

    def _closing(self, request: ChatRequest, usage: Usage | None, chars: int, model: str) -> Chunk:
        """The usage chunk a stream ends with: the upstream's usage, else an estimate."""
        if usage is None:
            usage = estimate_usage(request.messages, "")
            usage.completion_tokens = -(-chars // CHARS_PER_TOKEN)
            request.trace.usage_estimated = True
        return usage_chunk(id=request.trace.request_id, model=model or self.deployment.model, usage=usage)

    async def _parsed_stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        trace = request.trace
        trace.deployment = self.name
        if request.native is not None and self._native:
            async for piece in self._stream_native(request, request.native):
                yield piece
            return
        http_request = self._chat(request, stream=True)
        tally = _Tally(trace)
        done = False
        reads = self._http.data(http_request, trace)
        async with contextlib.aclosing(reads):
            async for payloads in reads:
                if done:
                    continue  # read to the end so the connection can be reused
                for data in payloads:
                    if data == b"[DONE]" or data.strip() == b"[DONE]":
                        done = True
                        break
                    chunk, usage = parse_chunk(_loads(data), self._secrets)
                    if usage is not None:
                        tally.usage = usage
                    if chunk is not None:
                        tally.see(chunk)
                        yield chunk
        if not done and not tally.finished:
            raise UpstreamConnectionError("the upstream closed the stream before it finished")
        closing = self._closing(request, tally.usage, tally.chars, tally.model)
        if tally.id:
            closing["id"] = tally.id
        yield closing

    async def _stream_native(self, request: ChatRequest, native: dict[str, Any]) -> AsyncIterator[Chunk]:
        """The upstream's Responses events as chat chunks: the stream every layer reads."""
        events = EventChunks(request.trace.request_id, self._model(request))
        reads = self._http.data(self._responses(request, native, stream=True), request.trace)
        async with contextlib.aclosing(reads):
            async for payloads in reads:
                for data in payloads:
                    for chunk in events.feed(_loads(data)):
                        if request.trace.ttft_s is None:
                            request.trace.ttft_s = time.perf_counter() - request.trace.started
                        yield chunk
        if not events.done:
            raise UpstreamConnectionError("the upstream closed the stream before it finished")

    async def embed(self, texts: list[str], dimensions: int | None = None) -> tuple[list[list[float]], int]:
        """Embedding vectors for ``texts`` from ``/embeddings`` (of ``dimensions`` if given), and the tokens used."""
        fields: dict[str, Any] = {"model": self.deployment.model, "input": texts}
        if dimensions is not None:
            fields["dimensions"] = dimensions
        body = build_body(self.name, lambda: fields)
        data = await self._http.post_json(self._request("/embeddings", body), Trace())
        return parse_embeddings(data, texts)

    async def start(self) -> None:
        self._http.open()

    async def aclose(self) -> None:
        await self._http.aclose()

    def children(self) -> tuple[()]:
        """A provider calls no other backend."""
        return ()


def _loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("the upstream sent a stream chunk that is not JSON") from exc
