"""The pool end to end: redis-server, `thrifty serve` with `provider: pool`, and `thrifty worker`
processes on loopback, each worker reaching the gateway by outbound HTTP only.

A request goes to the fastest worker that has the model; a worker SIGKILLed mid-task loses it
to another within the heartbeat and the client gets one answer (one ledger row); a stream that
already sent tokens ends with an error event instead; a draining worker finishes what it has
and takes nothing new; tasks held in Redis survive a gateway restart; forged and malformed
worker messages are refused with a logged reason while the pool goes on serving.
"""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
from tests.processes import free_port

from .conftest import ADMIN, PoolCluster, call, chat

HERE = Path(__file__).parent


def answer_of(result: tuple[int, dict[str, Any]]) -> str:
    status, body = result
    assert status == 200, body
    return str(body["choices"][0]["message"]["content"])


def in_background(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``fn`` in a thread; the returned function waits and gives its result."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    thread.start()

    def result() -> Any:
        thread.join(60)
        assert box, "the call did not finish"
        return box[0]

    return result


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def busy(url: str, name: str) -> bool:
    """True once the worker called ``name`` reports a task in hand (heartbeat)."""
    _, overview = call(url, "/admin/pool/workers")
    return any(w["name"] == name and w["active"] >= 1 for w in overview["workers"])


def test_the_fastest_worker_with_the_model_answers_through_the_openai_client(cluster: PoolCluster) -> None:
    url = cluster.gateway()
    cluster.worker(url, "no-model", fake="from no-model", model="other", speed=5000)
    cluster.worker(url, "slow", fake="from slow", speed=10)
    cluster.worker(url, "fast", fake="from fast", speed=400)
    cluster.wait_workers(url, 3)
    client = openai.OpenAI(base_url=url + "/v1", api_key=ADMIN, max_retries=0)
    messages: Any = [{"role": "user", "content": "hello"}]
    answer = client.chat.completions.create(model="smollm2", messages=messages)
    assert answer.choices[0].message.content == "from fast"
    stream = client.chat.completions.create(
        model="smollm2", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "from fast"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2
    cluster.stop_gateway()
    assert [row[1] for row in cluster.ledger()] == [200, 200]


def test_a_worker_killed_mid_task_loses_it_to_another_and_the_ledger_has_one_row(
    cluster: PoolCluster,
) -> None:
    url = cluster.gateway()
    first = cluster.worker(url, "first", fake="from first", delay=30, speed=400)
    cluster.worker(url, "second", fake="from second", speed=100)
    cluster.wait_workers(url, 2)
    pending = in_background(lambda: chat(url))
    wait_for(lambda: busy(url, "first"), "the first worker to take the task")
    first.send_signal(signal.SIGKILL)
    assert answer_of(pending()) == "from second"
    _, overview = call(url, "/admin/pool/workers")
    assert [e["kind"] for e in overview["events"]][:2] == ["migrated", "gone"]
    assert overview["stats"]["migrated"] == 1
    cluster.stop_gateway()
    rows = cluster.ledger()
    assert len(rows) == 1 and rows[0][1] == 200


def test_a_stream_that_already_sent_tokens_ends_with_an_error_event_when_its_worker_dies(
    cluster: PoolCluster,
) -> None:
    url = cluster.gateway()
    hang = cluster.script(url, "hang", HERE / "stream_then_hang.py")
    cluster.worker(url, "other", fake="from other", speed=10)
    cluster.wait_workers(url, 2)
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        data=b'{"model": "smollm2", "stream": true, "messages": [{"role": "user", "content": "hi"}]}',
        headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        first = response.readline()
        assert b"partial" in first
        hang.send_signal(signal.SIGKILL)
        rest = response.read().decode()
    assert '"code":"pool_worker_lost"' in rest.replace(" ", "")
    assert rest.rstrip().endswith("data: [DONE]")
    assert "from other" not in rest
    cluster.stop_gateway()
    assert len(cluster.ledger()) == 1


def test_a_draining_worker_finishes_what_it_has_and_takes_nothing_new(cluster: PoolCluster) -> None:
    url = cluster.gateway()
    leaving = cluster.worker(url, "leaving", fake="from leaving", delay=2, speed=400)
    cluster.worker(url, "staying", fake="from staying", speed=100)
    cluster.wait_workers(url, 2)
    pending = in_background(lambda: chat(url))
    wait_for(lambda: busy(url, "leaving"), "the leaving worker to take the task")
    leaving.send_signal(signal.SIGTERM)

    def draining() -> bool:
        _, overview = call(url, "/admin/pool/workers")
        return any(w["name"] == "leaving" and w["state"] == "draining" for w in overview["workers"])

    wait_for(draining, "the worker to drain")
    assert answer_of(chat(url)) == "from staying"
    assert answer_of(pending()) == "from leaving"
    assert leaving.wait(30) == 0
    _, overview = call(url, "/admin/pool/workers")
    assert overview["stats"]["migrated"] == 0
    assert {w["name"]: w["state"] for w in overview["workers"]}["leaving"] == "gone"


def test_tasks_held_in_redis_complete_across_a_gateway_restart(cluster: PoolCluster) -> None:
    front = cluster.gateway("front")
    port = free_port()
    back = cluster.gateway("back", port=port)
    cluster.worker(back, "w", fake="from w", delay=0.5, speed=100)
    cluster.wait_workers(front, 1)
    results = [in_background(lambda: chat(front)) for _ in range(4)]
    time.sleep(0.3)
    cluster.gateways["back"][2].send_signal(signal.SIGKILL)
    cluster.gateways["back"][2].wait()
    cluster.gateway("back", port=port)
    assert [answer_of(r()) for r in results] == ["from w"] * 4


def test_forged_and_malformed_worker_messages_are_refused_with_a_logged_reason(
    cluster: PoolCluster, redis_url: str
) -> None:
    url = cluster.gateway()
    cluster.worker(url, "honest", fake="from honest", delay=1.5, speed=100)
    cluster.wait_workers(url, 1)
    forger = cluster.token(url, "forger")

    status, body = call(url, "/pool/v1/lease", {"wait": 0}, key="tpw_made_up")
    assert status == 401 and body["error"]["code"] == "invalid_join_token"
    status, body = call(url, "/pool/v1/join", {"capabilities": {"models": "all of them"}}, key=forger)
    assert status == 400 and body["error"]["param"] == "capabilities.models"
    status, body = call(url, "/pool/v1/join", raw=b"{not json", key=forger)
    assert status == 400 and body["error"]["type"] == "invalid_request_error"

    pending = in_background(lambda: chat(url))
    wait_for(lambda: busy(url, "honest"), "the honest worker to take the task")
    caps = {"models": [{"name": "smollm2", "n_ctx": 2048, "tokens_per_s": 0.01}]}
    assert call(url, "/pool/v1/join", {"capabilities": caps}, key=forger)[0] == 200
    status, body = call(url, "/pool/v1/lease", {"wait": 0}, key=forger)
    assert status == 200 and body["tasks"] == []  # it sees only the tasks sent to it

    store = redis.Redis.from_url(redis_url, decode_responses=True)
    (found,) = store.keys("thrifty:pool:t:*")
    task_key = str(found)
    task_id, lease = task_key.rsplit(":", 1)[1], store.hget(task_key, "lease")
    forged = {"lease": lease, "response": {"choices": [{"message": {"content": "forged"}}]}, "done": True}
    status, body = call(url, f"/pool/v1/tasks/{task_id}/result", forged, key=forger)
    assert status == 403 and body["error"]["code"] == "not_lease_holder"
    status, body = call(url, f"/pool/v1/tasks/{task_id}/result", {**forged, "done": "yes"}, key=forger)
    assert status == 400 and body["error"]["param"] == "done"
    store.close()

    assert answer_of(pending()) == "from honest"
    log = cluster.log()
    assert "does not hold the lease" in log and "'capabilities.models' must be a list" in log


def test_a_revoked_token_puts_its_worker_out_and_new_work_elsewhere(cluster: PoolCluster) -> None:
    url = cluster.gateway()
    cluster.worker(url, "kept", fake="from kept", speed=10)
    token = cluster.token(url, "revoked")
    cluster.worker(url, "revoked", fake="from revoked", speed=400, token=token)
    cluster.wait_workers(url, 2)
    assert answer_of(chat(url)) == "from revoked"
    _, tokens = call(url, "/admin/pool/tokens")
    (revoked,) = [t for t in tokens["data"] if t["name"] == "revoked"]
    assert "token" not in revoked and "digest" not in revoked
    status, _ = call(url, f"/admin/pool/tokens/{revoked['id']}", method="DELETE")
    assert status == 200
    assert answer_of(chat(url)) == "from kept"
    time.sleep(1.2)  # the token cache lets a revoked token through for at most a second
    status, body = call(url, "/pool/v1/heartbeat", {"active": 0}, key=token)
    assert status == 401 and body["error"]["code"] == "invalid_join_token"


def test_a_model_no_worker_has_is_a_clear_503(cluster: PoolCluster) -> None:
    url = cluster.gateway(models="smollm2,gemma")
    cluster.worker(url, "w", fake="from w")
    cluster.wait_workers(url, 1)
    status, body = chat(url, model="gemma")
    assert status == 503
    assert "no connected pool worker has the model 'gemma'" in body["error"]["message"]


@pytest.mark.model
def test_a_worker_with_the_embedded_model_answers(cluster: PoolCluster) -> None:
    url = cluster.gateway()
    cluster.worker(url, "llama")  # the real SmolLM2 through llama.cpp, speed measured at start
    cluster.wait_workers(url, 1, timeout=180)
    client = openai.OpenAI(base_url=url + "/v1", api_key=ADMIN, max_retries=0)
    messages: Any = [{"role": "user", "content": "Say hello."}]
    answer = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=8)
    assert answer.choices[0].message.content and answer.usage and answer.usage.completion_tokens > 0
    stream = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=8, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
