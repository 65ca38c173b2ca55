"""Worker messages are checked field by field; each refusal names the field (``param``)."""

from __future__ import annotations

from typing import Any

import pytest

from thrifty.errors import InvalidRequest
from thrifty.pool.protocol import parse_heartbeat, parse_join, parse_lease, parse_release, parse_result

MODEL = {"name": "smollm2", "n_ctx": 2048, "tokens_per_s": 40.0}


def test_a_join_reads_capabilities_with_defaults() -> None:
    caps = parse_join({"capabilities": {"models": [MODEL], "power": "battery", "battery": 55}})
    assert caps.model("smollm2") is not None and caps.model("other") is None
    assert (caps.concurrency, caps.power, caps.battery, caps.memory_mb) == (1, "battery", 55.0, None)
    assert parse_join({"capabilities": caps.to_json()}) == caps


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "capabilities"),
        ({"capabilities": [], "extra": 1}, "extra"),
        ({"capabilities": "all"}, "capabilities"),
        ({"capabilities": {"models": []}}, "capabilities.models"),
        ({"capabilities": {"models": [MODEL], "gpu": True}}, "capabilities.gpu"),
        ({"capabilities": {"models": ["smollm2"]}}, "capabilities.models[0]"),
        ({"capabilities": {"models": [{**MODEL, "name": "../x"}]}}, "name"),
        ({"capabilities": {"models": [{**MODEL, "n_ctx": 1.5}]}}, "n_ctx"),
        ({"capabilities": {"models": [{**MODEL, "tokens_per_s": 0}]}}, "tokens_per_s"),
        ({"capabilities": {"models": [{**MODEL, "n_ctx": True}]}}, "n_ctx"),
        ({"capabilities": {"models": [MODEL], "concurrency": 0}}, "concurrency"),
        ({"capabilities": {"models": [MODEL], "power": "solar"}}, "power"),
        ({"capabilities": {"models": [MODEL], "battery": 101}}, "battery"),
        ({"capabilities": {"models": [MODEL], "memory_mb": -1}}, "memory_mb"),
    ],
)
def test_a_malformed_join_names_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_join(body)
    assert caught.value.param == param


def test_lease_heartbeat_and_release_bounds() -> None:
    assert parse_lease({}, 20.0) == (20.0, 1, set())
    assert parse_lease({"wait": 1, "max": 4, "held": ["a"]}, 5.0) == (1.0, 4, {"a"})
    for body, param in (
        ({"wait": 30}, "wait"),
        ({"max": 17}, "max"),
        ({"held": [1]}, "held"),
        ({"x": 1}, "x"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            parse_lease(body, 20.0)
        assert caught.value.param == param
    assert parse_heartbeat({"active": 2, "power": "ac"}) == (2, "ac", None)
    with pytest.raises(InvalidRequest):
        parse_heartbeat({"power": "nuclear"})
    with pytest.raises(InvalidRequest):
        parse_heartbeat({"active": -1})
    assert parse_release({}) is False and parse_release({"leave": True}) is True
    with pytest.raises(InvalidRequest):
        parse_release({"leave": "now"})


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "lease"),
        ({"lease": "short"}, "lease"),
        ({"lease": "l" * 16, "chunks": {}}, "chunks"),
        ({"lease": "l" * 16, "chunks": [1]}, "chunks[0]"),
        ({"lease": "l" * 16, "response": {"choices": []}, "done": True}, "response.choices"),
        ({"lease": "l" * 16, "error": {"message": 1}, "done": True}, "error.message"),
        ({"lease": "l" * 16, "response": {"choices": [{}]}}, "done"),
        (
            {"lease": "l" * 16, "response": {"choices": [{}]}, "error": {"message": "x"}, "done": True},
            "error",
        ),
        ({"lease": "l" * 16, "done": 1}, "done"),
    ],
)
def test_a_malformed_result_names_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_result(body)
    assert caught.value.param == param


def test_a_result_carries_chunks_an_answer_or_an_error() -> None:
    assert parse_result({"lease": "l" * 16, "chunks": [{}]}).chunks == [{}]
    assert parse_result({"lease": "l" * 16, "error": {"message": "oom"}, "done": True}).error == {
        "message": "oom"
    }
