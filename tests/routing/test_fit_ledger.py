"""End to end: serve with the prompt log on, route requests across two models, rate the answers,
stop (the ledger drains), fit a router on the ledger, and the router prefers the model that was
rated good for each kind of prompt."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from thrifty.config import load_config
from thrifty.gateway import Gateway
from thrifty.routing.evaluation.owndata import fit_main
from thrifty.routing.learned import load
from thrifty.routing.policies import LearnedPolicy
from thrifty.routing.settings import parse_routing
from thrifty.server.app import create_app

SUMS = "compute {a} plus {b} and give the exact integer sum"
POEMS = "write a gentle short poem about the {thing} at night"
THINGS = ["sea", "moon", "forest", "river", "city", "snow", "garden", "desert", "harbor", "valley"]


def write_config(tmp_path: Path, log_prompts: bool) -> Path:
    def group(name: str, script: str, price: str) -> dict[str, Any]:
        deployment = {"provider": "fake", "model": name, "price_model": price, "options": {"script": script}}
        return {"name": name, "deployments": [deployment]}

    data = {
        "server": {"data_dir": str(tmp_path)},
        "ledger": {"log_prompts": log_prompts},
        "models": [
            group("small", "a quick answer", "openai/gpt-4o-mini"),
            group("large", "a careful answer", "openai/gpt-4o"),
        ],
        "routing": {
            "tiers": [{"name": "fast", "model": "small"}, {"name": "strong", "model": "large"}],
            "routers": [{"name": "auto", "policy": "rules", "thresholds": [0.5]}],
        },
    }
    path = tmp_path / "thrifty.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def prompts() -> list[tuple[str, str]]:
    """(kind, text): twenty sums and twenty poems."""
    sums = [("sum", SUMS.format(a=17 * i + 3, b=29 * i + 5)) for i in range(20)]
    poems = [("poem", POEMS.format(thing=f"{THINGS[i % 10]}{'' if i < 10 else ' again'}")) for i in range(20)]
    return sums + poems


async def serve_and_rate(config_path: Path) -> tuple[Gateway, list[str]]:
    """Every prompt to one tier (alternating); the strong tier is rated good on sums and bad on
    poems, the fast tier the other way round."""
    gateway = Gateway(load_config(config_path))
    app = create_app(gateway)
    await gateway.start()
    ids = []
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for i, (kind, text) in enumerate(prompts()):
                tier = "fast" if i % 2 else "strong"
                body = {
                    "model": "auto",
                    "messages": [{"role": "user", "content": text}],
                    "thrifty": {"route": tier},
                }
                chat = await client.post("/v1/chat/completions", json=body)
                assert chat.status_code == 200, chat.text
                rid = chat.json()["id"]
                ids.append(rid)
                good = (tier == "strong") == (kind == "sum")
                rated = await client.post(
                    "/v1/feedback", json={"response_id": rid, "rating": 5 if good else 1}
                )
                assert rated.status_code == 200, rated.text
    finally:
        await gateway.aclose()  # drains the ledger
    return gateway, ids


async def test_a_router_fitted_on_the_ledger_prefers_the_model_rated_good(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, log_prompts=True)
    gateway, ids = await serve_and_rate(config_path)
    assert gateway.observer is not None
    ledger = gateway.observer.ledger_settings.path
    db = sqlite3.connect(ledger)
    logged = dict(db.execute("SELECT request_id, text FROM prompts").fetchall())
    db.close()
    assert set(logged) == set(ids) and logged[ids[0]] == prompts()[0][1]
    out = tmp_path / "router.npz"
    argv = [
        "--ledger",
        "--config",
        str(config_path),
        "--router",
        "auto",
        "--featurizer",
        "hash",
        "-o",
        str(out),
    ]
    assert fit_main(argv) == 0
    model = load(out)
    assert model.models == ("fast", "strong")
    assert np.isnan(model.outcomes).sum() == 40  # one model observed per prompt
    new_sum = "compute 1234 plus 4321 and give the exact integer sum"
    new_poem = "write a gentle short poem about the mountain at night"
    (sum_fast, sum_strong), (poem_fast, poem_strong) = model.predict_texts([new_sum, new_poem])
    assert sum_strong > sum_fast + 0.3 and poem_fast > poem_strong + 0.3
    assert float(model.mean_cost[1]) > float(model.mean_cost[0]) > 0  # gpt-4o over gpt-4o-mini prices
    # the learned policy with this file sends sums to the strong tier and poems to the fast one
    config = load_config(config_path)
    routing = parse_routing(config)
    assert routing is not None
    spec = routing.routers[0]
    tiers = [routing.tier(n) for n in spec.candidates]
    policy = LearnedPolicy(dataclasses.replace(spec, model_file=str(out)))
    assert tiers[policy.decide(new_sum, {}, tiers).index].name == "strong"
    assert tiers[policy.decide(new_poem, {}, tiers).index].name == "fast"


async def test_with_the_prompt_log_off_no_prompt_is_stored(tmp_path: Path, capsys: Any) -> None:
    config_path = write_config(tmp_path, log_prompts=False)
    gateway, ids = await serve_and_rate(config_path)
    assert gateway.observer is not None
    ledger = Path(gateway.observer.ledger_settings.path)
    db = sqlite3.connect(ledger)
    assert db.execute("SELECT COUNT(*) FROM prompts").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM requests").fetchone() == (40,)
    db.close()
    stored = b"".join(p.read_bytes() for p in ledger.parent.glob(ledger.name + "*"))
    assert b"gentle short poem" not in stored and b"exact integer sum" not in stored
    out = tmp_path / "router.npz"
    assert fit_main(["--ledger", "--config", str(config_path), "-o", str(out)]) == 2
    assert "log_prompts: true" in capsys.readouterr().out
