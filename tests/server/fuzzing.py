"""A real gateway on loopback and a schemathesis fuzzer driven from its ``/openapi.json``.

Shared by ``test_openapi.py``, ``test_fuzz.py`` and ``benchmarks/fuzz_routes.py``. The
gateway is the whole app (chat, embeddings, cache, observer, batches, the tenancy admin
API with a seeded team and virtual key) over a scripted fake backend, with an admin key
and a client key configured so that authentication is part of what gets fuzzed. Every generated case is sent with one of four credentials
(admin, client, a wrong key, none), and with some of its ids swapped for ones the
server knows, so the fuzzer also reaches the handlers behind a 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from thrifty.config import Config, parse_config
from thrifty.gateway import Gateway
from thrifty.testing import FakeBackend
from thrifty.types import ChatRequest, ChatResponse, Chunk

ADMIN_KEY = "sk-fuzz-admin"
CLIENT_KEY = "sk-fuzz-client"
MODEL = "m"
MAX_BODY = 64 * 1024  # small, so a 413 costs little to provoke
CREDENTIALS = {"admin": ADMIN_KEY, "client": CLIENT_KEY, "wrong": "sk-not-a-key", "none": None}
# Drawn with these weights: most cases carry the admin key, so they get past the door to the checks.
DRAWN = ("admin",) * 4 + ("client",) * 2 + ("wrong", "none")


class EmbeddingFake(FakeBackend):
    """The scripted backend, plus embeddings (one small vector per text) and ``n`` choices, as an
    OpenAI-compatible upstream gives them: the same answer under each index."""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        n = _choices(request)
        response = await super().complete(_one_choice(request))
        if n > 1:
            first = response.body["choices"][0]
            response.body["choices"] = [{**first, "index": i} for i in range(n)]
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        n = _choices(request)
        async for chunk in super().stream(_one_choice(request)):
            if n > 1 and chunk.get("choices"):
                chunk = {**chunk, "choices": [{**chunk["choices"][0], "index": i} for i in range(n)]}
            yield chunk

    async def embed(self, texts: list[str], dimensions: int | None = None) -> tuple[list[list[float]], int]:
        vectors = [[float(len(t) % 7), 1.0] for t in texts]
        return vectors, sum(max(1, len(t) // 4) for t in texts)


def _choices(request: ChatRequest) -> int:
    return int(request.params.get("n") or 1)


def _one_choice(request: ChatRequest) -> ChatRequest:
    """The request without ``n``, for the scripted backend (which answers one choice); same trace."""
    return replace(request, params={k: v for k, v in request.params.items() if k != "n"})


def gateway_config(data_dir: Path) -> Config:
    """Keys on (an admin and a client key), a response cache, one model."""
    return parse_config(
        {
            "server": {
                "data_dir": str(data_dir),
                "max_body_bytes": MAX_BODY,
                "api_keys": [ADMIN_KEY, {"key": CLIENT_KEY, "role": "client"}],
            },
            "cache": {"enabled": True, "l2_path": False},
            # priced as gpt-4o, so a virtual key's budget can run out
            "models": [
                {
                    "name": MODEL,
                    "deployments": [{"provider": "fake", "model": "fake-model", "price_model": "gpt-4o"}],
                }
            ],
        },
        source="fuzz.yaml",
        environ={},
    )


def build_gateway(data_dir: Path) -> Gateway:
    """The gateway of :func:`gateway_config`, its deployment the embedding-capable fake."""
    from thrifty.balance import build_group
    from thrifty.cache import build_store, wrap_cache

    config = gateway_config(data_dir)
    group = config.models[0]
    # As thrifty.compose.build does, with the fake in place of the provider: one cache store
    # for the caching groups, handed to the stack that starts and closes it.
    store = build_store(config)
    backend = build_group(group, [EmbeddingFake("a scripted answer", name="fake-model")], config)
    gateway = Gateway(config, backends={MODEL: wrap_cache(backend, group, config, store)})
    gateway.stack.cache_store = store
    return gateway


@dataclass
class Live:
    """A gateway serving on loopback, and ids it knows (for swapping into generated cases)."""

    url: str
    known: dict[str, str] = field(default_factory=dict)


@contextmanager
def live_gateway(data_dir: Path) -> Iterator[Live]:
    """``create_app`` under uvicorn on 127.0.0.1, in a thread; stopped on exit."""
    import socket

    import uvicorn

    from thrifty.server.app import create_app

    gateway = build_gateway(data_dir)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(gateway),
            host="127.0.0.1",
            port=port,
            log_level="critical",
            lifespan="on",
            loop="asyncio",
            http="httptools",
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="fuzz-gateway", daemon=True)
    thread.start()
    live = Live(f"http://127.0.0.1:{port}")
    try:
        _wait_ready(live.url, thread)
        live.known = _seed_objects(live.url)
        yield live
    finally:
        server.should_exit = True
        thread.join(30)


def _wait_ready(url: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 180  # generous: eight engineers share two cores
    while time.monotonic() < deadline and thread.is_alive():
        try:
            with urllib.request.urlopen(url + "/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"the gateway at {url} did not become ready")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 303 is an answer to check, not a hop to take


_OPENER = urllib.request.build_opener(_NoRedirects)


def call(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = ADMIN_KEY,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with the standard library; returns status, headers (lower-case) and body."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    sent = {"content-type": "application/json", **(headers or {})}
    if key is not None:
        sent["authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url + path, data=data, method=method, headers=sent)
    try:
        with _OPENER.open(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def _seed_objects(url: str) -> dict[str, str]:
    """A completion, an uploaded file and a batch, so generated ids can name real objects."""
    status, _, body = call(
        url, "POST", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 200, body
    response_id = json.loads(body)["id"]
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    }
    file_id = upload(url, json.dumps(line).encode() + b"\n")
    status, _, body = call(
        url, "POST", "/v1/batches", {"input_file_id": file_id, "endpoint": "/v1/chat/completions"}
    )
    assert status == 200, body
    batch_id = json.loads(body)["id"]
    stored = []
    for _ in range(2):  # one to read, one to delete
        status, _, body = call(url, "POST", "/v1/responses", {"model": MODEL, "input": "hi"})
        assert status == 200, body
        stored.append(json.loads(body)["id"])
    status, _, body = call(url, "POST", "/admin/teams", {"name": "fuzz-team", "rpm": 1000})
    assert status == 201, body
    status, _, body = call(url, "POST", "/admin/keys", {"name": "fuzz-key", "team": "fuzz-team"})
    assert status == 201, body
    return {
        "model": MODEL,
        "name": "dashboard.js",
        "response_id": response_id,
        "file_id": file_id,
        "input_file_id": file_id,
        "batch_id": batch_id,
        "key_id": json.loads(body)["id"],
        "team": "fuzz-team",
        "stored_response_id": stored[0],
        "deleted_response_id": stored[1],
        "previous_response_id": stored[0],  # a body field of POST /v1/responses
    }


def upload(url: str, data: bytes, key: str | None = ADMIN_KEY) -> str:
    boundary = "thriftyfuzzboundary"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, _, body = call(
        url,
        "POST",
        "/v1/files",
        raw=form,
        key=key,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 200, body
    return str(json.loads(body)["id"])


def operations(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``(METHOD, path)`` of every operation in an OpenAPI document."""
    methods = ("get", "put", "post", "delete", "patch", "head", "options")
    return [(m.upper(), path) for path, item in doc["paths"].items() for m in item if m in methods]


# -- the contract: an answer checked against the document ----------------------------


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    # Refs like "#/components/schemas/X" resolve against the root, so the components ride along.
    return Draft202012Validator({**schema, "components": doc["components"]})


def _response(doc: dict[str, Any], template: str, method: str, status: int) -> dict[str, Any]:
    responses = doc["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, not in {sorted(responses)}"
    response: dict[str, Any] = responses[str(status)]
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response


def check_answer(
    doc: dict[str, Any], template: str, method: str, answer: tuple[int, dict[str, str], bytes]
) -> None:
    """The answer's status, content type, headers and body are what the document says."""
    status, headers, body = answer
    response = _response(doc, template, method, status)
    media = headers.get("content-type", "").split(";")[0].strip()
    content = response.get("content", {})
    if not content:
        assert not body, f"{method} {template} {status}: a body where the document says none: {body[:80]!r}"
    else:
        assert media in content, f"{method} {template} {status}: {media!r} is not one of {sorted(content)}"
    documented = response.get("headers", {})
    for name, spec in documented.items():
        if spec.get("required"):
            assert name in headers, f"{method} {template} {status}: header {name} is missing"
    for name in headers:
        if name.startswith(("x-thrifty-", "x-ratelimit-")):
            assert name in documented, f"{method} {template} {status}: header {name} is not in the document"
    if media == "application/json":
        errors = sorted(validator(doc, content[media]["schema"]).iter_errors(json.loads(body)), key=str)
        assert not errors, f"{method} {template} {status}: {errors[0].message} at {list(errors[0].path)}"
    elif media == "text/event-stream":
        # each event's data line; OpenAI's chat and completions streams end with `[DONE]`,
        # Anthropic's (named events) and the Responses API's do not
        events = [
            line[6:]
            for block in body.decode().split("\n\n")
            for line in block.split("\n")
            if line.startswith("data: ")
        ]
        assert events
        if content[media].get("x-thrifty-stream-done", "/messages" not in template):
            assert events[-1] == "[DONE]"
            events.pop()
        event_schema = validator(doc, content[media]["x-thrifty-event-schema"])
        for event in events:
            event_schema.validate(json.loads(event))


# -- fuzzing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One fuzzed request and what the gateway answered."""

    operation: str  # "POST /v1/chat/completions"
    credential: str  # admin, client, wrong, none
    status: int
    content_type: str
    body: bytes
    curl: str
    request_body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names

    def problem(self) -> str | None:
        """Why this answer breaks the front door's promise, or None when it keeps it."""
        if self.status >= 500 and not (self.operation == "GET /ready" and self.status == 503):
            if self.status == 504 and _error_type(self.body) == "timeout_error":
                return None  # a deadline passed (the fuzzer sends x-thrifty-timeout down to 1e-16 s)
            return f"{self.status} from the gateway"
        if 400 <= self.status < 500:
            try:
                error = json.loads(self.body)["error"]
                named = isinstance(error["message"], str) and bool(error["message"].strip())
            except (ValueError, KeyError, TypeError):
                return f"{self.status} without OpenAI error JSON: {self.body[:120]!r}"
            if not named:
                return f"{self.status} with an empty error message"
        return None


def _error_type(body: bytes) -> str | None:
    try:
        kind = json.loads(body)["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return None
    return kind if isinstance(kind, str) else None


def load_schema(url: str) -> Any:
    """The served document, as schemathesis reads it (``from_url`` would leave out its own path)."""
    import schemathesis

    status, _, body = call(url, "GET", "/openapi.json", key=None)
    assert status == 200, body
    return schemathesis.openapi.from_dict(json.loads(body))


@dataclass(frozen=True)
class Plan:
    """What to generate: which modes, which credentials (drawn with repeats as weights), mutations."""

    modes: tuple[str, ...] = ("positive", "negative")
    credentials: tuple[str, ...] = DRAWN
    mutate: bool = True


VALID_ONLY = Plan(modes=("positive",), credentials=("admin",), mutate=False)


def fuzz(
    live: Live,
    examples: int,
    on_outcome: Callable[[Outcome], None],
    *,
    seed: int = 0,
    operations: Callable[[str], bool] = lambda label: True,
    plan: Plan = Plan(),
) -> None:
    """Send ``examples`` generated cases per operation and mode (valid, invalid) to ``live``.

    Deterministic for a given ``seed``: Hypothesis draws from a fixed seed, with no
    example database and no shrinking (every case is recorded, none is retried).
    """
    import requests
    import schemathesis

    schema = load_schema(live.url)
    fields = _field_names(schema.raw_schema)
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            if operations(operation.label):
                for mode in plan.modes:
                    _fuzz_one(
                        live,
                        session,
                        operation,
                        schemathesis.GenerationMode(mode),
                        examples,
                        seed,
                        fields if plan.mutate else None,
                        plan.credentials,
                        on_outcome,
                    )


def _fuzz_one(
    live: Live,
    session: Any,
    operation: Any,
    mode: Any,
    examples: int,
    seed: int,
    fields: frozenset[str] | None,
    credentials: tuple[str, ...],
    on_outcome: Callable[[Outcome], None],
) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable

    leaf = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8)
    )
    value = st.recursive(
        leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=4,
    )

    @fixed_seed(seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(generation_mode=mode),
        credential=st.sampled_from(credentials),
        swap=st.booleans(),
        mutation=st.none() | st.tuples(st.integers(min_value=0), value),
    )
    def one(case: Any, credential: str, swap: bool, mutation: tuple[int, Any] | None) -> None:
        if swap:
            _swap_known(case, live.known)
        json_body = isinstance(case.body, dict) and case.media_type == "application/json"
        if mutation is not None and fields is not None and json_body:
            _replace_one(case.body, *mutation, fields)
        key = CREDENTIALS[credential]
        # the drawn credential is the only key sent (the session cookie, when generated, stays: a stale one)
        headers = {
            k: v for k, v in (case.headers or {}).items() if k.lower() not in ("authorization", "x-api-key")
        }
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        case.headers = headers
        response = case.call(base_url=live.url, session=session, timeout=30, allow_redirects=False)
        on_outcome(
            Outcome(
                operation=operation.label,
                credential=credential,
                status=response.status_code,
                content_type=(response.headers.get("content-type") or [""])[0],
                body=response.content,
                curl=case.as_curl_command(),
                request_body=_bytes(response.request.body),
                headers={name.lower(): values[0] for name, values in response.headers.items() if values},
            )
        )

    with contextlib.suppress(Unsatisfiable):  # nothing to make invalid: no negative cases
        one()


def _field_names(doc: Any) -> frozenset[str]:
    """Every property name any schema of the document declares."""
    names: set[str] = set()
    todo = [doc]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                names.update(node["properties"])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return frozenset(names)


def _bytes(body: Any) -> bytes:
    if body is None:
        return b""
    return body.encode() if isinstance(body, str) else bytes(body)


def _replace_one(body: dict[str, Any], index: int, value: Any, fields: frozenset[str]) -> None:
    """Replace one documented field or array item of a JSON body with ``value``: type confusion."""
    slots: list[tuple[Any, Any]] = []
    todo: list[Any] = [body]
    while todo:
        node = todo.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            if isinstance(key, int) or key in fields:
                slots.append((node, key))
            todo.append(child)
    if slots:
        parent, key = slots[index % len(slots)]
        parent[key] = value


def _swap_known(case: Any, known: dict[str, str]) -> None:
    # reading a stored response needs one the Responses API stored, not a chat completion's id;
    # DELETE keeps the chat id (a 404), so the stored one stays readable for the rest of the run
    stored = case.operation.path.startswith("/v1/responses/") and case.method.upper() == "GET"
    for name in list(case.path_parameters or {}):
        if stored and name == "response_id":
            case.path_parameters[name] = known["stored_response_id"]
        elif name in known:
            case.path_parameters[name] = known[name]
    if isinstance(case.body, dict):
        for name in list(case.body):
            if name in known:
                case.body[name] = known[name]


# -- type confusion: every field of a valid body, swapped for each wrong kind of value ---------


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


WRONG_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    1.5,
    2**64,
    1e300,
    "",
    "x",
    "\ud800",
    "\x00",
    [],
    [None],
    {},
    {"a": {}},
    _deep(300),
)


def valid_bodies(known: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
    """A valid JSON body for every operation that takes one, with a value in every documented field."""
    chat = {
        "model": known["model"],
        "stream": False,
        "temperature": 0.5,
        "max_tokens": 5,
        "stop": ["z"],
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "stream_options": {"include_usage": True},
        "thrifty": {"cache": {"ttl": 5}, "tenant": "t"},
        "metadata": {"k": "v"},
    }
    policy = {"budget": "5/month", "rpm": 100, "tpm": 10_000, "parallel": 4, "models": [known["model"]]}
    return {
        ("POST", "/v1/chat/completions"): chat,
        ("POST", "/chat/completions"): chat,
        ("POST", "/v1/embeddings"): {
            "model": known["model"],
            "input": ["a", "b"],
            "encoding_format": "base64",
            "dimensions": 2,
        },
        ("POST", "/v1/messages"): {
            "model": known["model"],
            "max_tokens": 5,
            "system": "be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        },
        ("POST", "/v1/responses"): {
            "model": known["model"],
            "input": [{"role": "user", "content": "hi"}],
            "instructions": "be brief",
            "max_output_tokens": 5,
            "temperature": 0.5,
            "store": True,
            "previous_response_id": known["stored_response_id"],
            "metadata": {"k": "v"},
        },
        ("POST", "/v1/completions"): {
            "model": known["model"],
            "prompt": "hi",
            "max_tokens": 5,
            "temperature": 0.5,
            "stop": ["z"],
            "echo": False,
        },
        ("POST", "/v1/cache/purge"): {"namespace": "n"},
        ("POST", "/v1/feedback"): {
            "response_id": known["response_id"],
            "rating": 4,
            "comment": "c",
            "corrected_answer": "d",
        },
        ("POST", "/v1/batches"): {
            "input_file_id": known["file_id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"k": "v"},
        },
        ("POST", "/admin/keys"): {
            "name": "sweep-key",
            "team": known["team"],
            "role": "client",
            **policy,
            "expires": "30d",
        },
        ("PATCH", "/admin/keys/{key_id}"): {**policy, "expires": 3600},
        ("POST", "/admin/teams"): {"name": "sweep-team", **policy},
        ("PATCH", "/admin/teams/{team}"): policy,
    }


def slots(body: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = body.items() if isinstance(body, dict) else enumerate(body) if isinstance(body, list) else ()
    for key, child in items:
        yield (*path, key)
        yield from slots(child, (*path, key))


def _with(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(body))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def type_confusion(
    live: Live,
    on_outcome: Callable[[Outcome], None],
    *,
    operations: Callable[[str], bool] = lambda label: True,
) -> None:
    """Each field of each valid body in turn, replaced by each of :data:`WRONG_VALUES` (admin key)."""
    for (method, template), base in valid_bodies(live.known).items():
        label = f"{method} {template}"
        if not operations(label):
            continue
        path = template.format(**live.known)
        # Nesting far past every parser's limit, which json.dumps itself could not write.
        too_deep = json.dumps(base)[:-1].encode() + b', "pad": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        bodies = [
            json.dumps(_with(base, slot, value)).encode() for slot in slots(base) for value in WRONG_VALUES
        ]
        for raw in [*bodies, too_deep]:
            status, headers, body = call(live.url, method, path, raw=raw)
            curl = f"curl -X {method} {live.url}{path} -H 'Authorization: Bearer …' -d '{raw.decode()}'"
            on_outcome(
                Outcome(
                    operation=label,
                    credential="admin",
                    status=status,
                    content_type=headers.get("content-type", ""),
                    body=body,
                    curl=curl,
                    request_body=raw,
                    headers=headers,
                )
            )
