"""The embedded model: llama.cpp running a small GGUF model inside the process.

Generation runs on worker threads (one ``ThreadPoolExecutor`` per loaded
model, one worker per llama.cpp instance) so the event loop never blocks. A
llama.cpp context is not thread-safe, so each instance serves one request at
a time; ``options.n_instances`` loads more copies for more parallelism.
llama.cpp keeps the last prompt's KV cache and evaluates only what differs
from it; the tokens it reused are reported as ``cached_tokens`` (OpenAI's
``prompt_tokens_details``), so a prompt laid out stable-prefix-first
(``thrifty.compress``) is billed and measured as cached.
Streams cross from the worker thread to asyncio through a queue; closing the
stream (a client that went away) stops generation at the next token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..config import Deployment
from ..errors import InvalidRequest, ThriftyError, UpstreamError
from ..types import ChatRequest, ChatResponse, Chunk, Usage, usage_chunk
from .local_logprobs import completion_ids, logprobs
from .local_models import LocalOptions, load_llama, resolve

# Request parameters handed to llama.cpp as they are (``extra`` may add the llama-only ones).
PASSED = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "top_logprobs",
)
LLAMA_ONLY = ("top_k", "min_p", "repeat_penalty", "typical_p", "logit_bias")


def generation_kwargs(request: ChatRequest, options: LocalOptions) -> dict[str, Any]:
    """The keyword arguments for ``create_chat_completion``; raises InvalidRequest."""
    params = request.params
    if int(params.get("n") or 1) != 1:
        raise InvalidRequest("the local model returns one choice; n must be 1", param="n")
    kwargs: dict[str, Any] = {k: params[k] for k in PASSED if params.get(k) is not None}
    for key in LLAMA_ONLY:
        value = request.extra.get(key)
        if value is not None:
            kwargs[key] = _llama_option(key, value)
    max_tokens = params.get("max_tokens") or request.extra.get("max_completion_tokens") or options.max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
        raise InvalidRequest(f"max_tokens must be a positive integer, got {max_tokens!r}", param="max_tokens")
    kwargs["max_tokens"] = max_tokens
    if params.get("logprobs"):
        if not options.logprobs:
            raise InvalidRequest("this local deployment was loaded without logprobs", param="logprobs")
        kwargs["logprobs"] = True
    else:
        kwargs.pop("top_logprobs", None)
    return kwargs


def _llama_option(key: str, value: Any) -> Any:
    """A llama.cpp-only sampling option, checked: llama.cpp fails deep inside on a wrong type."""
    if key == "logit_bias":
        if not isinstance(value, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
        ):
            raise InvalidRequest("'logit_bias' must map token ids to numbers.", param=key)
        return value
    wanted = int if key == "top_k" else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise InvalidRequest(f"'{key}' must be a number; got {value!r}.", param=key)
    return value


def plain(value: Any) -> Any:
    """JSON-ready copy: llama.cpp reports logprobs as numpy floats."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    return float(value)


def translate_error(exc: Exception) -> ThriftyError:
    """A llama.cpp failure, by type: bad input (prompt too long, ...) or a model failure."""
    if isinstance(exc, ThriftyError):
        return exc
    if isinstance(exc, (ValueError, TypeError)):  # UnicodeEncodeError (a lone surrogate) is a ValueError
        return InvalidRequest(f"the local model refused the request: {exc}"[:300])
    return UpstreamError(f"the local model failed ({type(exc).__name__})")


class _Done:
    def __init__(self, usage: Usage) -> None:
        self.usage = usage


class LocalBackend:
    """A GGUF model run by llama-cpp-python in worker threads."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.name = deployment.name
        self.options = LocalOptions.parse(deployment)
        self._free: asyncio.Queue[Any] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._instances: list[Any] = []
        self._starting = asyncio.Lock()
        self._footprint = (0, 0.0)  # model file bytes, seconds loading took
        self._model_bytes = 0

    @property
    def ready(self) -> bool:
        """True once the model is loaded and can serve."""
        return self._free is not None

    async def start(self) -> None:
        """Find and load the model (``n_instances`` copies); safe to call again."""
        async with self._starting:
            if self.ready:
                return
            began = time.perf_counter()
            instances = await asyncio.to_thread(self._load)
            self._footprint = (self._model_bytes, time.perf_counter() - began)
            self._instances = instances
            self._executor = ThreadPoolExecutor(len(instances), thread_name_prefix=f"thrifty-{self.name}")
            self._free = asyncio.Queue()
            for llama in instances:
                self._free.put_nowait(llama)

    def footprint(self) -> tuple[int, float]:
        """(bytes of the model file, seconds loading took), for the observer's memory and startup limits.

        The file is mapped once however many instances share it.
        """
        return self._footprint

    def _load(self) -> list[Any]:
        path, chat_format = resolve(self.deployment, self.options)
        self._model_bytes = path.stat().st_size
        kwargs: dict[str, Any] = {
            "n_ctx": self.options.n_ctx,
            "n_threads": self.options.n_threads,
            "n_threads_batch": self.options.n_threads,
            "logits_all": self.options.logprobs,
            "chat_format": chat_format,
        }
        extra = self.options.extra_buffers
        return [load_llama(path, extra_buffers=extra, **kwargs) for _ in range(self.options.n_instances)]

    async def aclose(self) -> None:
        executor, instances = self._executor, self._instances
        self._free, self._executor, self._instances = None, None, []
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, True)
        for llama in instances:
            llama.close()

    def children(self) -> tuple[()]:
        """A provider calls no other backend."""
        return ()

    async def _submit(self, work: Callable[[Any], Any]) -> asyncio.Future[Any]:
        """Run ``work(llama)`` on a free instance; the instance returns to the pool when work ends."""
        if not self.ready:
            await self.start()
        assert self._free is not None and self._executor is not None
        free, loop = self._free, asyncio.get_running_loop()
        llama = await free.get()
        job: Future[Any] = self._executor.submit(work, llama)
        job.add_done_callback(lambda _: _call_soon(loop, free.put_nowait, llama))
        return asyncio.wrap_future(job, loop=loop)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        trace = request.trace
        trace.deployment = self.name
        kwargs = generation_kwargs(request, self.options)
        top = int(kwargs.pop("top_logprobs", 0) or 0) if kwargs.pop("logprobs", False) else None
        started = time.perf_counter()
        try:
            job = await self._submit(lambda llama: _complete(llama, request.messages, kwargs, top))
            out = await asyncio.shield(job)  # a cancelled caller cannot stop a running generation
        except Exception as exc:
            raise translate_error(exc) from exc
        finally:
            trace.upstream_s += time.perf_counter() - started
        usage = Usage.from_json(out.get("usage"))
        body = plain(out)
        body.update(id=trace.request_id, model=self.deployment.model, usage=usage.to_json())
        return ChatResponse(body=body, usage=usage)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        trace = request.trace
        trace.deployment = self.name
        kwargs = generation_kwargs(request, self.options)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            if not _call_soon(loop, queue.put_nowait, item):
                stop.set()

        def work(llama: Any) -> None:
            try:
                usage = _generate(llama, request.messages, kwargs, stop, put)
                put(_Done(usage))
            except Exception as exc:
                put(exc)

        started = time.perf_counter()
        try:
            await self._submit(work)
        finally:
            trace.upstream_s += time.perf_counter() - started
        try:
            while True:
                started = time.perf_counter()
                item = await queue.get()
                trace.upstream_s += time.perf_counter() - started
                if isinstance(item, _Done):
                    yield usage_chunk(id=trace.request_id, model=self.deployment.model, usage=item.usage)
                    return
                if isinstance(item, Exception):
                    raise translate_error(item) from item
                if trace.ttft_s is None and item["choices"][0]["delta"].get("content"):
                    trace.ttft_s = time.perf_counter() - trace.started
                item.update(id=trace.request_id, model=self.deployment.model)
                yield item
        finally:
            stop.set()  # the consumer left early: the worker stops at the next token


def _held(llama: Any) -> Any:
    """The tokens the instance's KV cache holds now: its last prompt and answer."""
    return llama.input_ids[: int(llama.n_tokens)].copy()


def reused(held: Any, now: Any, prompt: int) -> int:
    """Prompt tokens not evaluated again: the prefix ``now`` shares with what was ``held``.

    llama.cpp evaluates the last prompt token again for its logits, so at most ``prompt - 1``.
    """
    import numpy as np

    n = min(len(held), prompt, len(now))
    if n <= 0:
        return 0
    differ = np.flatnonzero(np.asarray(held[:n]) != np.asarray(now[:n]))
    common = int(differ[0]) if len(differ) else n
    return max(0, min(common, prompt - 1))


def _complete(llama: Any, messages: list[Any], kwargs: dict[str, Any], top: int | None) -> Any:
    """One completion on the worker thread; logprobs (when ``top`` is set) computed from kept logits."""
    held = _held(llama)
    out = llama.create_chat_completion(messages, **kwargs)
    usage = out.get("usage")
    if isinstance(usage, dict) and usage.get("prompt_tokens"):
        cached = reused(held, llama.input_ids, int(usage["prompt_tokens"]))
        if cached:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if top is not None:
        usage = out["usage"]
        text = out["choices"][0]["message"].get("content") or ""
        ids = completion_ids(llama, usage["prompt_tokens"], usage["completion_tokens"], text)
        out["choices"][0]["logprobs"] = logprobs(llama, usage["prompt_tokens"], ids, top)
    return out


def _generate(
    llama: Any, messages: list[Any], kwargs: dict[str, Any], stop: threading.Event, put: Callable[[Any], None]
) -> Usage:
    """Stream one completion on the worker thread; returns llama.cpp's token counts."""
    held = _held(llama)
    chunks: Iterator[Any] = llama.create_chat_completion(messages, stream=True, **kwargs)
    prompt: int | None = None
    finish = None
    try:
        for chunk in chunks:
            if stop.is_set():
                break
            choice = chunk["choices"][0]
            if prompt is None and choice["delta"].get("content"):
                prompt = int(llama.n_tokens)  # the prompt is evaluated before the first token
            finish = choice.get("finish_reason") or finish
            put(plain(chunk))
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    evaluated = int(llama.n_tokens)
    prompt = evaluated if prompt is None else prompt
    # llama.cpp evaluates every generated token but the last one when it stops for length
    completion = evaluated - prompt + (1 if finish == "length" else 0)
    cached = reused(held, llama.input_ids, prompt)
    return Usage(prompt_tokens=prompt, completion_tokens=max(0, completion), cached_tokens=cached)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[Any], None], item: Any) -> bool:
    try:
        loop.call_soon_threadsafe(fn, item)
    except RuntimeError:  # the loop has closed: nobody is listening any more
        return False
    return True
