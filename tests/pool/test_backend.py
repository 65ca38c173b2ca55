"""What a worker's error becomes for the client, and how a request is sized for the matcher."""

from __future__ import annotations

import pytest

from thrifty.errors import ContextWindowExceeded, InvalidRequest, UpstreamError, UpstreamStatusError
from thrifty.pool.backend import chunks_of, need_of, usage_of, worker_error
from thrifty.pool.cli import worker_main
from thrifty.testing import chat


def test_a_workers_error_keeps_its_meaning() -> None:
    assert isinstance(
        worker_error({"message": "long", "code": "context_length_exceeded"}), ContextWindowExceeded
    )
    refused = worker_error({"message": "bad", "status": 400, "code": "bad_param"})
    assert type(refused) is InvalidRequest and refused.status == 400
    failed = worker_error({"message": "oom", "status": 503})
    assert isinstance(failed, UpstreamStatusError) and failed.retryable
    odd = worker_error("crashed")
    assert type(odd) is UpstreamError and odd.code == "pool_worker_error" and odd.message == "crashed"


def test_a_request_is_sized_and_its_prefix_kept_for_affinity() -> None:
    one = need_of(chat("x" * 400, max_tokens=20), "m")
    assert (one.model, one.prompt_tokens, one.max_tokens, one.prefix) == ("m", 101, 20, None)
    request = chat("hi")
    request.messages.insert(0, {"role": "system", "content": "You are terse."})
    again = chat("other question")
    again.messages.insert(0, {"role": "system", "content": "You are terse."})
    assert need_of(request, "m").prefix == need_of(again, "m").prefix is not None


def test_a_whole_answer_becomes_a_stream_ending_in_usage() -> None:
    body = {
        "id": "c1",
        "model": "m",
        "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    first, finish, usage = chunks_of(body)
    assert first["choices"][0]["delta"]["content"] == "hi"
    assert finish["choices"][0]["finish_reason"] == "length"
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 1
    assert usage_of(None).total_tokens == 0


def test_a_worker_without_a_token_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("THRIFTY_POOL_TOKEN", raising=False)
    assert worker_main(["--join", "http://127.0.0.1:9"]) == 2
    assert "join token is needed" in capsys.readouterr().err
