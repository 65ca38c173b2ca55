"""POST /v1/feedback: ratings stored durably, linked to the ledger row, offered to the router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from thrifty.config import Config
from thrifty.observe import Observer

from .helpers import event, make_config, served


def client(obs: Observer) -> httpx.AsyncClient:
    app = Starlette(routes=obs.routes())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.fixture
async def obs(config: Config) -> AsyncIterator[Observer]:
    observer = Observer(config)
    await observer.start()
    observer.record(event(1, **served("fast")))
    yield observer
    await observer.aclose()


async def test_a_rating_is_stored_linked_to_its_route_and_readable_back(obs: Observer) -> None:
    heard: list[tuple[str, int]] = []
    obs.add_feedback_listener(lambda rid, rating: heard.append((rid, rating)))
    async with client(obs) as c:
        posted = await c.post(
            "/v1/feedback",
            json={
                "response_id": "chatcmpl-1",
                "rating": 2,
                "comment": "too vague",
                "corrected_answer": "42",
            },
        )
        assert posted.status_code == 200, posted.text
        assert (
            posted.json()["tier"] == "fast"
            and posted.json()["route"] == "policy=rules model=fast escalations=0"
        )
        read = (await c.get("/v1/feedback/chatcmpl-1")).json()
    assert heard == [("chatcmpl-1", 2)]
    assert read["request"]["model"] == "fast"
    [stored] = read["data"]
    assert (stored["rating"], stored["comment"], stored["corrected_answer"]) == (2, "too vague", "42")


async def test_feedback_survives_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    first = Observer(config)
    await first.start()
    first.record(event(7))
    async with client(first) as c:
        assert (
            await c.post("/v1/feedback", json={"response_id": "chatcmpl-7", "rating": 5})
        ).status_code == 200
    await first.aclose()
    second = Observer(config)
    await second.start()
    async with client(second) as c:
        read = (await c.get("/v1/feedback/chatcmpl-7")).json()
    await second.aclose()
    assert [f["rating"] for f in read["data"]] == [5]
    assert read["request"]["deployment"] == "fast/openai/gpt-4o-mini"


async def test_a_request_still_in_the_write_queue_can_be_rated(tmp_path: Path) -> None:
    obs = Observer(make_config(tmp_path, ledger={"flush_ms": 600_000, "batch_rows": 1_000_000}))
    await obs.start()
    obs.record(event(9))
    async with client(obs) as c:
        response = await c.post("/v1/feedback", json={"response_id": "chatcmpl-9", "rating": 4})
    await obs.aclose()
    assert response.status_code == 200


async def test_a_broken_listener_does_not_lose_the_rating(
    obs: Observer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(rid: str, rating: int) -> None:
        raise RuntimeError("router down")

    obs.add_feedback_listener(broken)
    async with client(obs) as c:
        assert (
            await c.post("/v1/feedback", json={"response_id": "chatcmpl-1", "rating": 3})
        ).status_code == 200
        assert len((await c.get("/v1/feedback/chatcmpl-1")).json()["data"]) == 1
    assert "feedback listener failed" in caplog.text


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        (
            {"response_id": "chatcmpl-404", "rating": 3},
            404,
            "response_id",
            "no request with id 'chatcmpl-404'",
        ),
        ({"response_id": "chatcmpl-1", "rating": 0}, 400, "rating", "from 1 to 5, got 0"),
        ({"response_id": "chatcmpl-1", "rating": 6}, 400, "rating", "from 1 to 5, got 6"),
        ({"response_id": "chatcmpl-1", "rating": "5"}, 400, "rating", "must be an integer"),
        ({"response_id": "chatcmpl-1", "rating": True}, 400, "rating", "must be an integer"),
        ({"response_id": "chatcmpl-1"}, 400, "rating", "'rating' is required"),
        ({"rating": 3}, 400, "response_id", "'response_id' is required"),
        ({"response_id": "chatcmpl-1", "rating": 3, "comment": 5}, 400, "comment", "must be a string"),
        ([1, 2], 400, None, "must be a JSON object"),
    ],
)
async def test_bad_feedback_gets_a_4xx_naming_the_problem(
    obs: Observer, body: Any, status: int, param: str | None, words: str
) -> None:
    async with client(obs) as c:
        response = await c.post("/v1/feedback", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert words in error["message"] and error["param"] == param


async def test_malformed_json_is_a_400(obs: Observer) -> None:
    async with client(obs) as c:
        response = await c.post("/v1/feedback", content=b"{not json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


async def test_reading_feedback_of_an_unknown_id_is_a_404(obs: Observer) -> None:
    async with client(obs) as c:
        response = await c.get("/v1/feedback/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
