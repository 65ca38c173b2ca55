"""The library: a Gateway built from config, used async and sync, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

import thrifty
from thrifty.errors import NotFound
from thrifty.testing import FakeBackend


def test_public_api_is_explicit() -> None:
    assert sorted(thrifty.__all__) == sorted(
        [
            "Backend",
            "ChatRequest",
            "ChatResponse",
            "Config",
            "FakeBackend",
            "Gateway",
            "Usage",
            "Wrapper",
            "errors",
            "load_config",
            "parse_config",
        ]
    )
    for name in thrifty.__all__:
        assert getattr(thrifty, name) is not None


async def test_async_chat_and_stream() -> None:
    async with thrifty.Gateway(backends={"m": FakeBackend("one two three")}, observe=False) as gw:
        reply = await gw.chat("m", "count")
        assert reply.text == "one two three"
        assert reply.usage.completion_tokens == 3
        pieces = [p async for p in gw.chat_stream("m", [{"role": "user", "content": "count"}])]
        assert "".join(pieces) == "one two three"
        with pytest.raises(NotFound):
            await gw.chat("other", "x")


def test_sync_chat_and_stream_work_without_an_event_loop() -> None:
    gw = thrifty.Gateway(backends={"m": FakeBackend("a b")}, observe=False)
    try:
        assert gw.chat_sync("m", "hi").text == "a b"
        assert "".join(gw.chat_stream_sync("m", "hi")) == "a b"
    finally:
        gw.close_sync()


def test_from_config_file_builds_the_configured_models(tmp_path: Path) -> None:
    cfg = tmp_path / "t.yaml"
    cfg.write_text(
        f"server: {{data_dir: {tmp_path}}}\n"
        "models:\n  - name: scripted\n    deployments: [{provider: fake, model: x, options: {script: hello from config}}]\n"
    )
    gw = thrifty.Gateway.from_config(cfg)
    try:
        assert gw.models() == ["scripted"]
        assert gw.chat_sync("scripted", "hi").text == "hello from config"
    finally:
        gw.close_sync()
    # the observer wrote the request to the ledger on close
    import sqlite3

    rows = sqlite3.connect(tmp_path / "ledger.db").execute("SELECT model, status FROM requests").fetchall()
    assert rows == [("scripted", 200)]


def _exit_without_close(data_dir: Path) -> tuple[int, str]:
    """Run a script that uses the gateway synchronously and never closes it; (ledger rows, stderr)."""
    import sqlite3
    import subprocess
    import sys

    cfg = data_dir / "t.yaml"
    cfg.write_text(
        f"server: {{data_dir: {data_dir}}}\n"
        "models:\n  - name: s\n    deployments: [{provider: fake, model: x, options: {script: hi}}]\n"
    )
    code = (
        f"import thrifty; gw = thrifty.Gateway.from_config({str(cfg)!r}); print(gw.chat_sync('s', 'x').text)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "hi", done.stderr
    db = sqlite3.connect(data_dir / "ledger.db")
    try:
        return int(db.execute("SELECT count(*) FROM requests").fetchone()[0]), done.stderr
    finally:
        db.close()


def test_sync_use_without_close_still_writes_the_ledger_at_exit(tmp_path: Path) -> None:
    assert _exit_without_close(tmp_path) == (1, "")


def test_the_exit_path_writes_its_row_in_each_of_100_runs(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    dirs = [tmp_path / f"run{i}" for i in range(100)]
    for d in dirs:
        d.mkdir()
    with ThreadPoolExecutor(4) as pool:  # a few at a time: the machine is shared
        results = list(pool.map(_exit_without_close, dirs))
    assert sum(rows for rows, _ in results) == 100
    assert [err for _, err in results if err] == []


class _Vectors(FakeBackend):
    """A scripted backend that also embeds: one vector per text, its length."""

    async def embed(self, texts: list[str], dimensions: int | None = None) -> tuple[list[list[float]], int]:
        return [[float(len(t))] for t in texts], len(texts)


async def test_a_gateway_inside_a_gateway_reaches_every_layer_of_the_inner_one(tmp_path: Path) -> None:
    from thrifty import compose
    from thrifty.config import parse_config

    models = [{"name": n, "deployments": [{"provider": "fake", "model": n}]} for n in ("small", "large")]
    tiers = [
        {"name": "fast", "model": "small", "price": {"input": 0.1, "output": 0.2}},
        {"name": "powerful", "model": "large", "price": {"input": 10.0, "output": 30.0}},
    ]
    inner_config = parse_config(
        {
            "server": {"data_dir": str(tmp_path / "inner")},
            "models": models,
            "cache": {"ttl": 600},
            "routing": {
                "tiers": tiers,
                "routers": [{"name": "auto", "candidates": ["fast", "powerful"]}],
                "feedback": {"enabled": True},
            },
        },
        source="inner.yaml",
    )
    inner_stack = compose.build(inner_config)
    inner = thrifty.Gateway(inner_config, backends={**inner_stack.backends, "vec": _Vectors()}, observe=False)
    outer_config = parse_config(
        {"server": {"data_dir": str(tmp_path / "outer")}, "models": []}, source="o.yaml"
    )
    async with thrifty.Gateway(outer_config, backends={"auto": inner, "vec": inner}) as outer:
        reply = await outer.chat("auto", "hello", temperature=0, thrifty={"cache": {"namespace": "team"}})
        assert reply.text == "ok"

        status = outer.status()
        assert {"Router:auto", "CacheLayer:small", "Balancer:small"} <= status.keys()
        assert status["Router:auto"]["requests_by_tier"]["fast"] == 1

        assert await outer.stack.purge("team") == 1
        assert await outer.embed("vec", ["ab", "abc"]) == ([[2.0], [3.0]], 2)

        assert outer.observer is not None
        router = next(layer for layer in outer.stack.walk() if layer.name == "auto")
        assert router.on_feedback in outer.observer._listeners  # type: ignore[attr-defined]
        for listener in outer.observer._listeners:
            listener(reply.body["id"], 5)
        assert outer.status()["Router:auto"]["feedback"] == 1


async def test_each_stack_builds_starts_and_closes_its_own_cache_store_and_embedder(tmp_path: Path) -> None:
    from thrifty.cache.layer import CacheLayer
    from thrifty.config import parse_config

    config = parse_config(
        {
            "server": {"data_dir": str(tmp_path)},
            "cache": {"ttl": 600},
            "models": [{"name": n, "deployments": [{"provider": "fake", "model": n}]} for n in ("a", "b")],
        },
        source="thrifty.yaml",
    )
    gw, other = thrifty.Gateway(config, observe=False), thrifty.Gateway(config, observe=False)
    store = gw.stack.cache_store
    assert store is not None and store is not other.stack.cache_store  # no registry keyed by the config
    layers = [layer for layer in gw.stack.walk() if isinstance(layer, CacheLayer)]
    assert [layer.name for layer in layers] == ["a", "b"] and all(layer.store is store for layer in layers)
    assert store._embed == gw.stack.embedder.embed  # the semantic cache embeds with the stack's model
    async with gw:
        assert store.tiers.disk is not None and store.tiers.disk.path == str(tmp_path / "cache.sqlite3")
        first = await gw.chat("a", "hi", temperature=0)
        again = await gw.chat("a", "hi", temperature=0)
        assert first.text == again.text and store.stats()["hits_l1"] == 1
    assert not store._open  # closed with the stack, after its layers
