from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import orjson
import pytest

from thrifty.config import Deployment
from thrifty.errors import ConfigError, InvalidRequest
from thrifty.providers import build
from thrifty.providers.local import LocalBackend, generation_kwargs
from thrifty.providers.local_models import LocalOptions, resolve, smollm2_path
from thrifty.testing import chat


def local(model: str = "smollm2", **options: object) -> Deployment:
    return Deployment(name=f"local/{model}", provider="local", model=model, options=options)


def test_options_are_validated_naming_deployment_and_key() -> None:
    assert LocalOptions.parse(local(n_threads=2, logprobs=False)) == LocalOptions(n_threads=2, logprobs=False)
    assert LocalOptions.parse(local("smollm2")).logprobs
    assert not LocalOptions.parse(local("gemma3-270m")).logprobs
    with pytest.raises(ConfigError, match=r"'local/smollm2': options.n_ctx: must be a positive integer"):
        LocalOptions.parse(local(n_ctx=0))
    with pytest.raises(ConfigError, match="options.threads: unknown option"):
        LocalOptions.parse(local(threads=2))
    with pytest.raises(ConfigError, match="absolute path"):
        LocalOptions.parse(local(model_path="model.gguf"))


def test_model_names_resolve_to_installed_gguf_files() -> None:
    path, chat_format = resolve(local("smollm2"), LocalOptions())
    assert path == smollm2_path() and path.suffix == ".gguf" and path.is_file()
    assert chat_format is None
    with pytest.raises(ConfigError, match="unknown local model 'llama-70b'"):
        resolve(local("llama-70b"), LocalOptions())
    with pytest.raises(ConfigError, match="is not a file"):
        resolve(local("x"), LocalOptions(model_path="/nonexistent/x.gguf"))


def test_generation_kwargs_pass_sampling_and_cap_tokens() -> None:
    request = chat("hi", temperature=0, seed=7, stop=["\n"], logprobs=True, top_logprobs=3)
    request.extra["top_k"] = 5
    kwargs = generation_kwargs(request, LocalOptions(max_tokens=99))
    assert kwargs == {
        "temperature": 0,
        "seed": 7,
        "stop": ["\n"],
        "top_logprobs": 3,
        "logprobs": True,
        "top_k": 5,
        "max_tokens": 99,
    }
    with pytest.raises(InvalidRequest) as caught:
        generation_kwargs(chat("hi", logprobs=True), LocalOptions(logprobs=False))
    assert caught.value.param == "logprobs"
    with pytest.raises(InvalidRequest):
        generation_kwargs(chat("hi", max_tokens=-1), LocalOptions())


def test_build_makes_a_local_backend_without_loading_it() -> None:
    backend = build(local())
    assert isinstance(backend, LocalBackend) and not backend.ready and backend.name == "local/smollm2"


@pytest.fixture
async def smollm2() -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(local("smollm2", n_ctx=1024))
    await backend.start()
    yield backend
    await backend.aclose()


QUESTION = "What is the capital of France? Answer in one short sentence."


@pytest.mark.model
async def test_complete_answers_with_counted_usage(smollm2: LocalBackend) -> None:
    assert smollm2.ready
    request = chat(QUESTION, temperature=0, max_tokens=24)
    response = await smollm2.complete(request)
    assert response.text.strip()
    assert response.usage.prompt_tokens > 5 and 0 < response.usage.completion_tokens <= 24
    assert response.finish_reason in ("stop", "length")
    assert response.body["usage"]["total_tokens"] == response.usage.total_tokens
    assert request.trace.deployment == "local/smollm2" and request.trace.upstream_s > 0


@pytest.mark.model
async def test_stream_answers_and_ends_with_usage(smollm2: LocalBackend) -> None:
    request = chat(QUESTION, temperature=0, max_tokens=24)
    chunks = [c async for c in smollm2.stream(request)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip()
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and usage["prompt_tokens"] > 5 and 0 < usage["completion_tokens"] <= 24
    assert request.trace.ttft_s is not None


@pytest.mark.model
async def test_logprobs_come_back_as_plain_json(smollm2: LocalBackend) -> None:
    response = await smollm2.complete(chat(QUESTION, max_tokens=8, logprobs=True, top_logprobs=2))
    tokens = response.body["choices"][0]["logprobs"]["content"]
    assert tokens and all(t["logprob"] <= 0 and len(t["top_logprobs"]) == 2 for t in tokens)
    orjson.dumps(response.body)  # no numpy floats left


@pytest.mark.model
@pytest.mark.parametrize("max_tokens", [4, 40])  # cut by length, and (likely) ended by the model
async def test_logprobs_match_llama_cpp_own_computation(smollm2: LocalBackend, max_tokens: int) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    llama = smollm2._instances[0]
    reference = llama.create_chat_completion(
        messages, temperature=0, max_tokens=max_tokens, logprobs=True, top_logprobs=1
    )
    expected = [t["logprob"] for t in reference["choices"][0]["logprobs"]["content"]]
    request = chat(QUESTION, temperature=0, max_tokens=max_tokens, logprobs=True, top_logprobs=1)
    response = await smollm2.complete(request)
    got = response.body["choices"][0]["logprobs"]["content"]
    assert response.text == reference["choices"][0]["message"]["content"]
    assert [t["logprob"] for t in got] == pytest.approx(expected, abs=1e-3)
    assert all(t["top_logprobs"][0]["logprob"] >= t["logprob"] - 1e-6 for t in got)


@pytest.mark.model
async def test_closing_a_stream_stops_generation_and_frees_the_model(smollm2: LocalBackend) -> None:
    stream = smollm2.stream(chat("Count from 1 to 200, separated by commas.", temperature=0, max_tokens=400))
    assert isinstance(stream, AsyncGenerator)
    for _ in range(4):
        await anext(stream)
    await stream.aclose()
    assert smollm2._free is not None
    llama = await asyncio.wait_for(smollm2._free.get(), 60)  # back in the pool once the worker stopped
    evaluated = llama.n_tokens
    smollm2._free.put_nowait(llama)
    assert evaluated < 100  # prompt plus a few tokens, not the 400 asked for
    assert (await smollm2.complete(chat("Hi", max_tokens=4))).usage.completion_tokens > 0


@pytest.mark.model
async def test_gemma3_270m_answers() -> None:
    backend = LocalBackend(local("gemma3-270m", n_ctx=512, logprobs=False))
    try:
        response = await backend.complete(chat(QUESTION, temperature=0, max_tokens=16))
        assert response.text.strip() and response.usage.completion_tokens > 0
    finally:
        await backend.aclose()


@pytest.mark.model
async def test_prompt_longer_than_the_context_is_a_client_error(smollm2: LocalBackend) -> None:
    with pytest.raises(InvalidRequest, match="context window"):
        await smollm2.complete(chat("word " * 1500, max_tokens=4))
    with pytest.raises(InvalidRequest):
        async for _ in smollm2.stream(chat("word " * 1500, max_tokens=4)):
            pass
    assert (await smollm2.complete(chat("Hi", max_tokens=4))).usage.completion_tokens > 0


@pytest.mark.model
async def test_concurrent_requests_share_one_lazily_loaded_model() -> None:
    backend = LocalBackend(local("smollm2", n_ctx=512))
    try:

        async def streamed() -> int:
            chunks = [c async for c in backend.stream(chat("Hello", max_tokens=6))]
            return int(chunks[-1]["usage"]["completion_tokens"])

        results = await asyncio.gather(
            backend.complete(chat("Hi", max_tokens=6)), backend.complete(chat("Yo", max_tokens=6)), streamed()
        )
        assert backend.ready and len(backend._instances) == 1
        assert all(r.usage.completion_tokens > 0 for r in results[:2]) and results[2] > 0
    finally:
        await backend.aclose()
    assert not backend.ready
