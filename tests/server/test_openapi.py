"""``GET /openapi.json`` is the contract: every route is in it, and real answers match it.

A real gateway serves on loopback (``fuzzing.live_gateway``: keys on, cache, observer,
batches, over a scripted backend). Each probe below is a real request, valid or not;
its status must be one the document lists for the operation, and its body must
validate against the documented schema (each event, for a stream).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from thrifty.server.app import create_app

from .fuzzing import (
    ADMIN_KEY,
    CLIENT_KEY,
    MODEL,
    Live,
    build_gateway,
    call,
    check_answer,
    live_gateway,
    operations,
    upload,
    validator,
)

HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_gateway(tmp_path_factory.mktemp("openapi")) as running:
        yield running


@pytest.fixture(scope="module")
def doc(live: Live) -> dict[str, Any]:
    status, headers, body = call(live.url, "GET", "/openapi.json", key=None)
    assert status == 200 and headers["content-type"].startswith("application/json")
    loaded: dict[str, Any] = json.loads(body)
    return loaded


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    template: str  # the path as the document spells it
    body: Any = None
    key: str | None = ADMIN_KEY
    expect: int = 200
    path: str = ""  # the concrete path when it differs; {file_id} etc. are filled from known ids
    raw: bytes | None = None  # a body that is not JSON
    headers: dict[str, str] | None = None

    def url_path(self, known: dict[str, str]) -> str:
        return (self.path or self.template).format(**known)


MUTE = {"model": MODEL, "messages": HI}
ANTHROPIC = {"model": MODEL, "max_tokens": 20, "messages": HI}
PROBES = [
    Probe("chat", "POST", "/v1/chat/completions", MUTE),
    Probe(
        "chat-stream",
        "POST",
        "/v1/chat/completions",
        {**MUTE, "stream": True, "stream_options": {"include_usage": True}},
    ),
    Probe("chat-alias", "POST", "/chat/completions", MUTE),
    Probe("chat-client-key", "POST", "/v1/chat/completions", MUTE, key=CLIENT_KEY),
    Probe("chat-bad-temperature", "POST", "/v1/chat/completions", {**MUTE, "temperature": 9}, expect=400),
    Probe("chat-not-json", "POST", "/v1/chat/completions", raw=b"{nope", expect=400),
    Probe("chat-unknown-model", "POST", "/v1/chat/completions", {**MUTE, "model": "nope"}, expect=404),
    Probe("chat-no-key", "POST", "/v1/chat/completions", MUTE, key=None, expect=401),
    Probe("chat-wrong-key", "POST", "/v1/chat/completions", MUTE, key="sk-wrong", expect=401),
    Probe(
        "chat-too-large",
        "POST",
        "/v1/chat/completions",
        {**MUTE, "messages": [{"role": "user", "content": "x" * 70_000}]},
        expect=413,
    ),
    Probe(
        "chat-bad-cache-header", "POST", "/v1/chat/completions", {**MUTE, "thrifty": {"cache": 5}}, expect=400
    ),
    Probe("models", "GET", "/v1/models"),
    Probe("model", "GET", "/v1/models/{model}"),
    Probe("model-unknown", "GET", "/v1/models/{model}", path="/v1/models/nope", expect=404),
    Probe(
        "responses",
        "POST",
        "/v1/responses",
        {"model": MODEL, "input": "hello there", "instructions": "be brief"},
    ),
    Probe(
        "responses-stream", "POST", "/v1/responses", {"model": MODEL, "input": "hello there", "stream": True}
    ),
    Probe(
        "responses-items",
        "POST",
        "/v1/responses",
        {
            "model": MODEL,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "done"},
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        },
    ),
    Probe(
        "responses-bad-item", "POST", "/v1/responses", {"model": MODEL, "input": [{"type": "x"}]}, expect=400
    ),
    Probe(
        "responses-unknown-previous",
        "POST",
        "/v1/responses",
        {"model": MODEL, "input": "hi", "previous_response_id": "resp_nope"},
        expect=404,
    ),
    Probe("response", "GET", "/v1/responses/{response_id}", path="/v1/responses/{stored_response_id}"),
    Probe(
        "response-client-key",
        "GET",
        "/v1/responses/{response_id}",
        path="/v1/responses/{stored_response_id}",
        key=CLIENT_KEY,
        expect=404,
    ),
    Probe(
        "response-unknown", "GET", "/v1/responses/{response_id}", path="/v1/responses/resp_nope", expect=404
    ),
    Probe(
        "response-input-items",
        "GET",
        "/v1/responses/{response_id}/input_items",
        path="/v1/responses/{stored_response_id}/input_items?order=asc&limit=1",
    ),
    Probe(
        "response-input-items-bad-order",
        "GET",
        "/v1/responses/{response_id}/input_items",
        path="/v1/responses/{stored_response_id}/input_items?order=sideways",
        expect=400,
    ),
    Probe(
        "response-delete", "DELETE", "/v1/responses/{response_id}", path="/v1/responses/{deleted_response_id}"
    ),
    Probe("completions", "POST", "/v1/completions", {"model": MODEL, "prompt": ["a", "b"], "echo": True}),
    Probe("completions-stream", "POST", "/v1/completions", {"model": MODEL, "prompt": "a", "stream": True}),
    Probe("completions-token-ids", "POST", "/v1/completions", {"model": MODEL, "prompt": [1, 2]}, expect=400),
    Probe("models-no-key", "GET", "/v1/models", key=None, expect=401),
    Probe("embeddings", "POST", "/v1/embeddings", {"model": MODEL, "input": ["a", "bc"]}),
    Probe(
        "embeddings-token-ids",
        "POST",
        "/v1/embeddings",
        {"model": MODEL, "input": [[15339, 1917], [1]], "encoding_format": "base64", "dimensions": 2},
    ),
    Probe("embeddings-bad-input", "POST", "/v1/embeddings", {"model": MODEL, "input": [1, "a"]}, expect=400),
    Probe(
        "embeddings-bad-format",
        "POST",
        "/v1/embeddings",
        {"model": MODEL, "input": "a", "encoding_format": "hex"},
        expect=400,
    ),
    Probe("embeddings-unknown-model", "POST", "/v1/embeddings", {"model": "nope", "input": "a"}, expect=404),
    Probe("messages", "POST", "/v1/messages", ANTHROPIC),
    Probe("messages-stream", "POST", "/v1/messages", {**ANTHROPIC, "stream": True}),
    Probe("messages-no-max-tokens", "POST", "/v1/messages", {"model": MODEL, "messages": HI}, expect=400),
    Probe("messages-unknown-model", "POST", "/v1/messages", {**ANTHROPIC, "model": "nope"}, expect=404),
    Probe("messages-no-key", "POST", "/v1/messages", ANTHROPIC, key=None, expect=401),
    Probe("count-tokens", "POST", "/v1/messages/count_tokens", {"model": MODEL, "messages": HI}),
    Probe(
        "count-tokens-bad", "POST", "/v1/messages/count_tokens", {"model": MODEL, "messages": []}, expect=400
    ),
    Probe("purge", "POST", "/v1/cache/purge", {"namespace": "x"}),
    Probe("purge-bad", "POST", "/v1/cache/purge", {"namespace": ""}, expect=400),
    Probe("feedback", "POST", "/v1/feedback", {"response_id": "{response_id}", "rating": 4}),
    Probe(
        "feedback-bad-rating",
        "POST",
        "/v1/feedback",
        {"response_id": "{response_id}", "rating": 6},
        expect=400,
    ),
    Probe(
        "feedback-unknown", "POST", "/v1/feedback", {"response_id": "chatcmpl-nope", "rating": 1}, expect=404
    ),
    Probe("feedback-read", "GET", "/v1/feedback/{response_id}"),
    Probe("feedback-read-unknown", "GET", "/v1/feedback/{response_id}", path="/v1/feedback/nope", expect=404),
    Probe("file", "GET", "/v1/files/{file_id}"),
    Probe("file-unknown", "GET", "/v1/files/{file_id}", path="/v1/files/file-nope", expect=404),
    Probe("file-content", "GET", "/v1/files/{file_id}/content"),
    Probe(
        "batch-create",
        "POST",
        "/v1/batches",
        {"input_file_id": "{file_id}", "endpoint": "/v1/chat/completions"},
    ),
    Probe(
        "batch-create-bad",
        "POST",
        "/v1/batches",
        {"input_file_id": "{file_id}", "endpoint": "/v1/x"},
        expect=400,
    ),
    Probe(
        "batch-create-unknown-file",
        "POST",
        "/v1/batches",
        {"input_file_id": "file-nope", "endpoint": "/v1/chat/completions"},
        expect=404,
    ),
    Probe("batch-list", "GET", "/v1/batches", path="/v1/batches?limit=5"),
    Probe("batch-list-bad-limit", "GET", "/v1/batches", path="/v1/batches?limit=0", expect=400),
    Probe("batch", "GET", "/v1/batches/{batch_id}"),
    Probe("batch-unknown", "GET", "/v1/batches/{batch_id}", path="/v1/batches/batch_nope", expect=404),
    Probe(
        "batch-cancel-unknown",
        "POST",
        "/v1/batches/{batch_id}/cancel",
        path="/v1/batches/batch_nope/cancel",
        expect=404,
    ),
    Probe("admin-status", "GET", "/admin/status"),
    Probe("admin-status-no-key", "GET", "/admin/status", key=None, expect=401),
    Probe("admin-alerts", "GET", "/admin/alerts"),
    Probe("admin-learning", "GET", "/admin/learning"),
    Probe("admin-learning-client-key", "GET", "/admin/learning", key=CLIENT_KEY, expect=403),
    Probe("metrics", "GET", "/metrics"),
    Probe("metrics-no-key", "GET", "/metrics", key=None, expect=401),
    Probe("dashboard", "GET", "/dashboard"),
    Probe("dashboard-stats", "GET", "/dashboard/api/stats"),
    Probe("dashboard-learning", "GET", "/dashboard/api/learning"),
    Probe("dashboard-status", "GET", "/dashboard/api/status"),
    Probe(
        "dashboard-asset", "GET", "/dashboard/static/{name}", path="/dashboard/static/dashboard.js", key=None
    ),
    Probe(
        "dashboard-asset-unknown",
        "GET",
        "/dashboard/static/{name}",
        path="/dashboard/static/x.js",
        key=None,
        expect=404,
    ),
    Probe(
        "key-create",
        "POST",
        "/admin/keys",
        {
            "name": "probe-key",
            "team": "{team}",
            "budget": "5/month",
            "rpm": 600,
            "models": [MODEL],
            "expires": "30d",
        },
        expect=201,
    ),
    Probe("key-create-duplicate", "POST", "/admin/keys", {"name": "fuzz-key"}, expect=400),
    Probe("key-create-unknown-field", "POST", "/admin/keys", {"name": "k2", "colour": "red"}, expect=400),
    Probe("key-create-unknown-team", "POST", "/admin/keys", {"name": "k3", "team": "nope"}, expect=404),
    Probe("key-create-client-key", "POST", "/admin/keys", {"name": "k4"}, key=CLIENT_KEY, expect=403),
    Probe("key-create-too-large", "POST", "/admin/keys", {"name": "k5", "pad": "x" * 70_000}, expect=413),
    Probe("keys", "GET", "/admin/keys", path="/admin/keys?team=fuzz-team"),
    Probe("key", "GET", "/admin/keys/{key_id}"),
    Probe("key-unknown", "GET", "/admin/keys/{key_id}", path="/admin/keys/key_nope", expect=404),
    Probe("key-update", "PATCH", "/admin/keys/{key_id}", {"budget": 10, "tpm": 5000, "expires": 3600}),
    Probe("key-update-bad", "PATCH", "/admin/keys/{key_id}", {"expires": "forever"}, expect=400),
    Probe("key-rotate", "POST", "/admin/keys/{key_id}/rotate"),
    Probe("teams", "GET", "/admin/teams"),
    Probe(
        "team-create",
        "POST",
        "/admin/teams",
        {"name": "probe-team", "budget": "20/week", "parallel": 2},
        expect=201,
    ),
    Probe("team-create-duplicate", "POST", "/admin/teams", {"name": "fuzz-team"}, expect=400),
    Probe("team", "GET", "/admin/teams/{team}"),
    Probe("team-unknown", "GET", "/admin/teams/{team}", path="/admin/teams/nope", expect=404),
    Probe("team-update", "PATCH", "/admin/teams/{team}", {"models": MODEL, "rpm": None}),
    Probe("dashboard-teams", "GET", "/dashboard/api/teams"),
    Probe(
        "dashboard-login",
        "POST",
        "/dashboard/login",
        raw=b"key=" + ADMIN_KEY.encode(),
        key=None,
        expect=303,
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    Probe(
        "dashboard-login-wrong",
        "POST",
        "/dashboard/login",
        raw=b"key=sk-no",
        key=None,
        expect=303,
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    Probe("dashboard-logout", "POST", "/dashboard/logout", key=None, expect=303),
    Probe("health", "GET", "/health", key=None),
    Probe("ready", "GET", "/ready", key=None),
    Probe("openapi", "GET", "/openapi.json", key=None),
    # last: the seeded key stays revoked
    Probe("key-revoke", "POST", "/admin/keys/{key_id}/revoke"),
    Probe("key-delete", "DELETE", "/admin/keys/{key_id}"),
    Probe("key-rotate-revoked", "POST", "/admin/keys/{key_id}/rotate", expect=400),
]


def _fill(value: Any, known: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**known) if value.startswith("{") and value.endswith("}") else value
    if isinstance(value, dict):
        return {k: _fill(v, known) for k, v in value.items()}
    return value


def send(live: Live, probe: Probe, key: str | None = ADMIN_KEY) -> tuple[int, dict[str, str], bytes]:
    body = _fill(probe.body, live.known)
    return call(
        live.url,
        probe.method,
        probe.url_path(live.known),
        body,
        key=key,
        raw=probe.raw,
        headers=probe.headers,
    )


@pytest.mark.parametrize("probe", [pytest.param(p, id=p.name) for p in PROBES])
def test_real_answers_match_the_document(live: Live, doc: dict[str, Any], probe: Probe) -> None:
    answer = send(live, probe, key=probe.key)
    assert answer[0] == probe.expect, answer[2][:300]
    check_answer(doc, probe.template, probe.method, answer)


def test_file_upload_and_batch_cancel_match_the_document(live: Live, doc: dict[str, Any]) -> None:
    line = {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": MUTE}
    file_id = upload(live.url, json.dumps(line).encode() + b"\n")
    check_answer(doc, "/v1/files/{file_id}", "GET", call(live.url, "GET", f"/v1/files/{file_id}"))
    created = call(
        live.url, "POST", "/v1/batches", {"input_file_id": file_id, "endpoint": "/v1/chat/completions"}
    )
    check_answer(doc, "/v1/batches", "POST", created)
    batch_id = json.loads(created[2])["id"]
    cancelled = call(live.url, "POST", f"/v1/batches/{batch_id}/cancel")
    assert cancelled[0] in (200, 409)  # the one-line batch may already be done
    check_answer(doc, "/v1/batches/{batch_id}/cancel", "POST", cancelled)
    bad = call(
        live.url,
        "POST",
        "/v1/files",
        raw=b"purpose=fine-tune",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert bad[0] == 400
    check_answer(doc, "/v1/files", "POST", bad)


def test_a_malformed_multipart_upload_is_a_documented_400_naming_the_file(
    live: Live, doc: dict[str, Any]
) -> None:
    # Found by the fuzzer: Starlette answered "Invalid multipart data." as plain text.
    answer = call(
        live.url,
        "POST",
        "/v1/files",
        raw=b"--b\r\n[]--b--\r\n",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert answer[0] == 400
    check_answer(doc, "/v1/files", "POST", answer)
    assert json.loads(answer[2])["error"]["param"] == "file"


def test_a_wrong_method_and_an_unknown_path_get_the_documented_error(live: Live, doc: dict[str, Any]) -> None:
    error = validator(doc, {"$ref": "#/components/schemas/Error"})
    for method, path, status in (("DELETE", "/v1/models", 405), ("GET", "/v1/nothing-here", 404)):
        got, _, body = call(live.url, method, path)
        assert got == status
        error.validate(json.loads(body))


def test_every_route_is_in_the_document_and_every_documented_route_exists(
    tmp_path: Path, doc: dict[str, Any]
) -> None:
    app = create_app(build_gateway(tmp_path))
    served = set()
    for route in app.routes:
        path = route.path  # type: ignore[attr-defined]
        template = "/".join(part.split(":")[0] + ("}" if ":" in part else "") for part in path.split("/"))
        for method in route.methods or ():  # type: ignore[attr-defined]
            if method != "HEAD":
                served.add(f"{method} {template}")
    documented = {f"{method} {path}" for method, path in operations(doc)}
    assert served - documented == set(), "routes missing from /openapi.json"
    assert documented - served == set(), "documented routes the app does not serve"


def test_every_documented_operation_has_a_probe_that_succeeds(doc: dict[str, Any]) -> None:
    documented = set(operations(doc))
    probed = {(p.method, p.template) for p in PROBES if p.expect < 400}
    probed |= {("POST", "/v1/files"), ("POST", "/v1/batches/{batch_id}/cancel")}  # the upload test
    assert documented - probed == set()


def test_the_document_is_valid_openapi_3_1_with_valid_schemas(live: Live, doc: dict[str, Any]) -> None:
    from .fuzzing import load_schema

    load_schema(live.url).validate()
    assert doc["openapi"].startswith("3.1")
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"500", "431"} <= statuses, f"{method} {path}"
            if _needs_key(doc, operation):
                assert "401" in statuses, f"{method} {path} needs a key but does not document 401"


def _needs_key(doc: dict[str, Any], operation: dict[str, Any]) -> bool:
    security = operation.get("security", doc["security"])
    return bool(security) and {} not in security


def _numeric_bounds(doc: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(param, 'minimum'|'maximum', bound) for every bounded number of a chat request."""
    out = []
    for name, prop in doc["components"]["schemas"]["ChatCompletionRequest"]["properties"].items():
        number = next((s for s in prop.get("anyOf", [prop]) if s.get("type") in ("integer", "number")), None)
        for side in ("minimum", "maximum"):
            if number is not None and side in number:
                out.append((name, side, number[side]))
    return out


def test_every_documented_number_bound_is_the_one_enforced(live: Live, doc: dict[str, Any]) -> None:
    bounds = _numeric_bounds(doc)
    assert {"temperature", "top_p", "max_tokens", "n"} <= {name for name, _, _ in bounds}
    for name, side, bound in bounds:
        integer = float(bound).is_integer() and name not in ("temperature", "top_p")
        step = 1 if integer else 0.01
        inside, outside = (bound, bound - step) if side == "minimum" else (bound, bound + step)
        ok = call(live.url, "POST", "/v1/chat/completions", {**MUTE, name: inside})
        refused = call(live.url, "POST", "/v1/chat/completions", {**MUTE, name: outside})
        assert ok[0] == 200, (name, inside, ok[2][:200])
        assert refused[0] == 400 and json.loads(refused[2])["error"]["param"] == name, (name, outside)


def test_an_integer_written_with_a_fraction_of_zero_is_an_integer(live: Live, doc: dict[str, Any]) -> None:
    # Found by the fuzzer: JSON Schema (and so the document) counts 100.0 as an integer; the gateway
    # refused it. It is now sent on as 100; a real fraction, or a number beyond 64 bits, is still a 400.
    assert doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]["max_tokens"]["anyOf"][0] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 2**63 - 1,  # the gateway refuses integers beyond 64 bits, so the document says so
    }
    ok = call(live.url, "POST", "/v1/chat/completions", {**MUTE, "max_tokens": 100.0, "seed": -3.0})
    assert ok[0] == 200, ok[2][:200]
    for bad in (100.5, 1e30):
        refused = call(live.url, "POST", "/v1/chat/completions", {**MUTE, "max_tokens": bad})
        assert refused[0] == 400 and json.loads(refused[2])["error"]["param"] == "max_tokens"


def _secured() -> list[Any]:
    """Every operation the document says needs a key, as test parameters."""
    from thrifty.config import ServerConfig
    from thrifty.server.openapi import document

    static = document(ServerConfig())
    out = []
    for path, item in static["paths"].items():
        for method, operation in item.items():
            if _needs_key(static, operation):
                out.append(pytest.param(method.upper(), path, id=f"{method.upper()} {path}"))
    return out


@pytest.mark.parametrize(("method", "template"), _secured())
def test_every_operation_that_documents_a_key_refuses_a_request_without_one(
    live: Live, doc: dict[str, Any], method: str, template: str
) -> None:
    upload_form = Probe("upload", "POST", "/v1/files", raw=b"purpose=batch")
    probe = next(
        (p for p in PROBES if (p.method, p.template) == (method, template) and p.expect < 400), upload_form
    )
    answer = send(live, probe, key=None)
    assert answer[0] == 401, answer[2][:200]
    check_answer(doc, template, method, answer)


def test_embeddings_over_the_documented_input_count_are_refused(live: Live, doc: dict[str, Any]) -> None:
    limit = doc["components"]["schemas"]["EmbeddingRequest"]["properties"]["input"]["anyOf"][1]["maxItems"]
    answer = call(live.url, "POST", "/v1/embeddings", {"model": MODEL, "input": ["a"] * (limit + 1)})
    assert answer[0] == 400
    check_answer(doc, "/v1/embeddings", "POST", answer)


def test_a_role_given_as_an_object_is_a_documented_400(live: Live, doc: dict[str, Any]) -> None:
    answer = call(
        live.url,
        "POST",
        "/v1/chat/completions",
        {"model": MODEL, "messages": [{"role": {"x": 1}, "content": "hi"}]},
    )
    assert answer[0] == 400 and json.loads(answer[2])["error"]["param"] == "messages[0].role"
    check_answer(doc, "/v1/chat/completions", "POST", answer)


def test_an_oversized_feedback_body_is_a_documented_413(live: Live, doc: dict[str, Any]) -> None:
    answer = call(
        live.url,
        "POST",
        "/v1/feedback",
        {"response_id": live.known["response_id"], "rating": 3, "pad": "x" * 70_000},
    )
    assert answer[0] == 413
    check_answer(doc, "/v1/feedback", "POST", answer)


def test_a_lone_surrogate_in_feedback_is_not_a_5xx(live: Live, doc: dict[str, Any]) -> None:
    for field in ("response_id", "comment", "corrected_answer"):
        body = {"response_id": live.known["response_id"], "rating": 3, field: "\ud800"}
        answer = call(live.url, "POST", "/v1/feedback", raw=json.dumps(body).encode())
        assert answer[0] < 500, (field, answer[2][:200])
        check_answer(doc, "/v1/feedback", "POST", answer)


def test_feedback_nested_past_the_depth_limit_is_a_documented_400(live: Live, doc: dict[str, Any]) -> None:
    raw = b'{"rating": 3, "response_id": "' + live.known["response_id"].encode() + b'", "pad": '
    answer = call(live.url, "POST", "/v1/feedback", raw=raw + b"[" * 5000 + b"]" * 5000 + b"}")
    assert answer[0] == 400, answer[2][:200]
    check_answer(doc, "/v1/feedback", "POST", answer)


def test_batch_metadata_nested_past_the_depth_limit_is_a_documented_400(
    live: Live, doc: dict[str, Any]
) -> None:
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    body = {
        "input_file_id": live.known["file_id"],
        "endpoint": "/v1/chat/completions",
        "metadata": {"k": deep},
    }
    answer = call(live.url, "POST", "/v1/batches", body)
    assert answer[0] == 400, answer[2][:200]
    check_answer(doc, "/v1/batches", "POST", answer)


def _virtual_key(live: Live, name: str, **policy: Any) -> str:
    status, _, body = call(live.url, "POST", "/admin/keys", {"name": name, **policy})
    assert status == 201, body
    return str(json.loads(body)["secret"])


def test_a_virtual_keys_rate_limit_headers_and_its_429_are_documented(
    live: Live, doc: dict[str, Any]
) -> None:
    secret = _virtual_key(live, "limited", rpm=1, tpm=100_000)
    ok = call(live.url, "POST", "/v1/chat/completions", MUTE, key=secret)
    assert ok[0] == 200 and ok[1]["x-ratelimit-limit-requests"] == "1", ok[2][:200]
    assert ok[1]["x-ratelimit-remaining-tokens"].isdigit()
    check_answer(doc, "/v1/chat/completions", "POST", ok)
    refused = call(live.url, "POST", "/v1/chat/completions", MUTE, key=secret)
    assert refused[0] == 429 and json.loads(refused[2])["error"]["code"] == "rate_limit_exceeded"
    assert int(refused[1]["retry-after"]) >= 1
    check_answer(doc, "/v1/chat/completions", "POST", refused)


def test_a_spent_budget_is_a_documented_429_budget_exceeded(live: Live, doc: dict[str, Any]) -> None:
    secret = _virtual_key(live, "broke", budget="0.000001")  # less than one request's worst case
    for stream in (False, True):
        answer = call(live.url, "POST", "/v1/chat/completions", {**MUTE, "stream": stream}, key=secret)
        assert answer[0] == 429 and json.loads(answer[2])["error"]["code"] == "budget_exceeded", answer[2][
            :200
        ]
        assert "retry-after" not in answer[1]  # a total budget never resets
        check_answer(doc, "/v1/chat/completions", "POST", answer)


def test_a_virtual_client_key_is_refused_on_admin_routes_with_a_documented_403(
    live: Live, doc: dict[str, Any]
) -> None:
    secret = _virtual_key(live, "plain-client")
    for method, template in (
        ("GET", "/admin/keys"),
        ("GET", "/admin/teams"),
        ("GET", "/admin/status"),
        ("GET", "/dashboard/api/teams"),
    ):
        answer = call(live.url, method, template, key=secret)
        assert answer[0] == 403, answer[2][:200]
        check_answer(doc, template, method, answer)


def test_a_dashboard_session_cookie_reads_the_admin_routes_until_logout(
    live: Live, doc: dict[str, Any]
) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    login = call(
        live.url, "POST", "/dashboard/login", raw=f"key={ADMIN_KEY}".encode(), key=None, headers=form
    )
    check_answer(doc, "/dashboard/login", "POST", login)
    cookie = login[1]["set-cookie"].split(";")[0]
    assert cookie.startswith("thrifty_session=")
    stats = call(live.url, "GET", "/dashboard/api/stats", key=None, headers={"cookie": cookie})
    assert stats[0] == 200
    check_answer(doc, "/dashboard/api/stats", "GET", stats)
    logout = call(live.url, "POST", "/dashboard/logout", key=None, headers={"cookie": cookie})
    check_answer(doc, "/dashboard/logout", "POST", logout)
    after = call(live.url, "GET", "/dashboard/api/stats", key=None, headers={"cookie": cookie})
    assert after[0] == 401 and json.loads(after[2])["error"]["code"] == "session_expired"
    check_answer(doc, "/dashboard/api/stats", "GET", after)


def test_a_key_lifetime_beyond_a_century_is_a_documented_400_not_a_500(
    live: Live, doc: dict[str, Any]
) -> None:
    # Found by the fuzzer: `expires: 1e300` made an expiry no JSON encoder could write (a 500).
    for expires in (1e300, "999999999w", 0, "0d"):
        answer = call(live.url, "POST", "/admin/keys", {"name": "long-lived", "expires": expires})
        assert answer[0] == 400 and json.loads(answer[2])["error"]["param"] == "expires", (
            expires,
            answer[2][:200],
        )
        check_answer(doc, "/admin/keys", "POST", answer)
    updated = call(live.url, "PATCH", f"/admin/keys/{live.known['key_id']}", {"expires": 1e300})
    assert updated[0] == 400
    check_answer(doc, "/admin/keys/{key_id}", "PATCH", updated)


def test_every_served_model_and_only_those_may_be_a_keys_allow_list(live: Live, doc: dict[str, Any]) -> None:
    models = doc["components"]["schemas"]["KeyCreate"]["properties"]["models"]["anyOf"][0]["anyOf"][0]
    assert models["items"] == {"enum": [MODEL]}
    refused = call(live.url, "POST", "/admin/keys", {"name": "other-model", "models": ["gpt-9"]})
    assert refused[0] == 400 and json.loads(refused[2])["error"]["param"] == "models"


async def test_a_degraded_ready_and_a_storage_unavailable_503_are_documented(tmp_path: Path) -> None:
    import httpx

    from thrifty.config import parse_config
    from thrifty.gateway import Gateway
    from thrifty.server.openapi import document
    from thrifty.testing import FakeBackend

    (tmp_path / "batches.db").mkdir()  # the batch store cannot open: the gateway serves degraded
    gateway = Gateway(parse_config({"server": {"data_dir": str(tmp_path)}}), backends={MODEL: FakeBackend()})
    doc = document(gateway.config.server, gateway.models())
    transport = httpx.ASGITransport(app=create_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://thrifty") as client:
        await gateway.start()
        for method, template, path, status in (
            ("GET", "/ready", "/ready", 200),
            ("GET", "/v1/batches", "/v1/batches", 503),
            ("GET", "/v1/files/{file_id}", "/v1/files/file-x", 503),
        ):
            r = await client.request(method, path)
            assert r.status_code == status, r.text
            check_answer(doc, template, method, (r.status_code, dict(r.headers), r.content))
        assert (await client.get("/ready")).json()["status"] == "degraded"
        assert (await client.get("/v1/batches")).json()["error"]["code"] == "storage_unavailable"
    await gateway.aclose()


def test_an_unused_token_id_is_a_documented_400_not_a_500(live: Live, doc: dict[str, Any]) -> None:
    # Found by the fuzzer: cl100k_base leaves 100256 and 100261-100275 unused; decoding one was a 500.
    token = doc["components"]["schemas"]["EmbeddingRequest"]["properties"]["input"]["anyOf"][2]["items"]
    assert token["maximum"] == 100_255
    for ids in ([1, 100_256], [[5], [100_275, 2]]):
        answer = call(live.url, "POST", "/v1/embeddings", {"model": MODEL, "input": ids})
        assert answer[0] == 400 and "100" in json.loads(answer[2])["error"]["message"], answer[2][:200]
        check_answer(doc, "/v1/embeddings", "POST", answer)


def test_integers_written_with_a_fraction_of_zero_are_integers_on_embeddings_and_messages(
    live: Live, doc: dict[str, Any]
) -> None:
    # Found by the fuzzer: token ids, `dimensions` and a Messages `max_tokens` of 7.0 were refused,
    # while JSON Schema (and so the document) calls them integers.
    embedded = call(
        live.url, "POST", "/v1/embeddings", {"model": MODEL, "input": [15339.0, 1917], "dimensions": 2.0}
    )
    assert embedded[0] == 200, embedded[2][:200]
    check_answer(doc, "/v1/embeddings", "POST", embedded)
    message = call(live.url, "POST", "/v1/messages", {**ANTHROPIC, "max_tokens": 20.0})
    assert message[0] == 200, message[2][:200]
    check_answer(doc, "/v1/messages", "POST", message)
    for body in ({"model": MODEL, "input": [1.5]}, {"model": MODEL, "input": "a", "dimensions": 2.5}):
        refused = call(live.url, "POST", "/v1/embeddings", body)
        assert refused[0] == 400, (body, refused[2][:200])


def test_n_above_one_is_served_by_a_backend_that_returns_several_choices(
    live: Live, doc: dict[str, Any]
) -> None:
    n = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]["n"]
    assert n["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 128}
    assert "refuse" in n["description"]  # the document says n > 1 depends on the backend
    answer = call(live.url, "POST", "/v1/chat/completions", {**MUTE, "n": 3})
    assert answer[0] == 200 and [c["index"] for c in json.loads(answer[2])["choices"]] == [0, 1, 2]
    check_answer(doc, "/v1/chat/completions", "POST", answer)
