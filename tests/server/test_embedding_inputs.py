"""/v1/embeddings input shapes (strings, token ids), base64 vectors and ``dimensions``."""

from __future__ import annotations

import base64
import struct
import tempfile
from typing import Any

import httpx
import pytest

from thrifty.config import Deployment, parse_config
from thrifty.errors import InvalidRequest
from thrifty.gateway import Gateway
from thrifty.providers.openai import OpenAIBackend
from thrifty.server.app import create_app
from thrifty.server.embedding_inputs import embedding_texts, encode_vector
from thrifty.transport.mock import MockResponse, MockTransport

HELLO_WORLD = [15339, 1917]  # "hello world" in cl100k_base


def test_token_id_arrays_decode_to_text() -> None:
    assert embedding_texts(HELLO_WORLD) == ["hello world"]
    assert embedding_texts([HELLO_WORLD, [15339]]) == ["hello world", "hello"]
    assert embedding_texts("plain") == ["plain"]


@pytest.mark.parametrize("value", [None, [], [1, "a"], [[]], [[1], "a"], [-1], [True], 3, [[1.5]]])
def test_other_shapes_are_a_400_naming_input(value: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        embedding_texts(value)
    assert caught.value.param == "input"


def test_a_token_id_beyond_the_vocabulary_is_a_400() -> None:
    with pytest.raises(InvalidRequest, match="beyond cl100k_base"):
        embedding_texts([10**7])


def test_base64_is_little_endian_float32() -> None:
    encoded = encode_vector([1.0, -0.5], "base64")
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (1.0, -0.5)


def _client(transport: MockTransport) -> httpx.AsyncClient:
    config = parse_config({"server": {"data_dir": tempfile.mkdtemp(prefix="thrifty-")}})
    upstream = OpenAIBackend(
        Deployment(
            name="emb/openai",
            provider="openai",
            model="text-embedding-3-small",
            api_base="http://127.0.0.1:9/v1",
        ),
        transport,
    )
    gateway = Gateway(config, backends={"emb": upstream}, observe=False)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://thrifty"
    )


async def test_token_ids_base64_and_dimensions_through_the_http_api() -> None:
    answer = {
        "data": [{"index": 0, "embedding": [0.25, 0.5]}],
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    transport = MockTransport(lambda request: MockResponse(json=answer))
    async with _client(transport) as client:
        r = await client.post(
            "/v1/embeddings",
            json={"model": "emb", "input": [HELLO_WORLD], "encoding_format": "base64", "dimensions": 2},
        )
    assert r.status_code == 200, r.text
    vector = struct.unpack("<2f", base64.b64decode(r.json()["data"][0]["embedding"]))
    assert vector == (0.25, 0.5)
    assert transport.requests[0].json() == {
        "model": "text-embedding-3-small",
        "input": ["hello world"],
        "dimensions": 2,
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"encoding_format": "hex"}, "encoding_format"),
        ({"dimensions": 0}, "dimensions"),
        ({"dimensions": "8"}, "dimensions"),
        ({"input": [[1, 2], "x"]}, "input"),
    ],
)
async def test_bad_embedding_fields_are_a_400(body: dict[str, Any], param: str) -> None:
    transport = MockTransport(lambda request: MockResponse(json={}))
    async with _client(transport) as client:
        r = await client.post("/v1/embeddings", json={"model": "emb", "input": "x", **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert not transport.requests


async def test_the_embedded_minilm_refuses_other_dimensions() -> None:
    async with _client(MockTransport(lambda request: MockResponse(json={}))) as client:
        r = await client.post(
            "/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": "x", "dimensions": 128}
        )
    assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions"
    assert "384" in r.json()["error"]["message"]
