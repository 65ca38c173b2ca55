"""`thrifty usage` over the ledger and `thrifty top` against a live gateway."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from thrifty.config import Config
from thrifty.observe import Observer
from thrifty.observe.top import top_main
from thrifty.observe.usage import usage_main

from .helpers import BIG, event, make_config, serve, served

DAY = 86_400.0


async def filled_ledger(config: Config) -> str:
    obs = Observer(config)
    await obs.start()
    base = 1_700_000_000.0  # 2023-11-14 22:13 UTC
    obs.record(event(1, ts=base, api_key="alice", **served("fast", "miss")))
    obs.record(event(2, ts=base + 60, api_key="alice", deployment="", **served("fast", "hit-exact")))
    obs.record(event(3, ts=base + DAY, api_key="bob", model="smart", deployment=BIG, **served("smart")))
    obs.record(
        event(
            4,
            ts=base + DAY,
            api_key="bob",
            status=429,
            error_type="rate_limit_error",
            prompt_tokens=0,
            completion_tokens=0,
        )
    )
    await obs.aclose()
    return obs.ledger_settings.path


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[dict[str, object]]:
    assert usage_main([*argv, "--json"]) == 0
    rows: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return rows


async def test_usage_by_tier_shows_cost_and_savings_against_both_baselines(
    config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    path = await filled_ledger(config)
    rows = {r["tier"]: r for r in run_json(capsys, ["--by", "tier", "--ledger", path])}
    assert set(rows) == {"fast", "smart", "(unrouted)", "total"}
    fast, smart, total = rows["fast"], rows["smart"], rows["total"]
    assert fast["requests"] == 2 and fast["cache_hits"] == 1
    # the hit cost nothing; without the cache it would have cost as much as the miss
    assert fast["cost_nocache_usd"] == pytest.approx(2 * float(fast["cost_usd"]))  # type: ignore[arg-type]
    assert smart["cost_usd"] == pytest.approx(smart["cost_top_usd"])  # type: ignore[arg-type]  # smart is the top model
    assert total["requests"] == 4 and total["errors"] == 1
    assert total["saved_vs_top_usd"] == pytest.approx(float(total["cost_top_usd"]) - float(total["cost_usd"]))  # type: ignore[arg-type]


async def test_usage_by_key_and_by_day(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    path = await filled_ledger(config)
    by_key = {r["key"]: r["requests"] for r in run_json(capsys, ["--by", "key", "--ledger", path])}
    assert by_key == {"alice": 2, "bob": 2, "total": 4}
    by_day = {r["day"]: r["requests"] for r in run_json(capsys, ["--by", "day", "--ledger", path])}
    assert by_day == {"2023-11-14": 2, "2023-11-15": 2, "total": 4}


async def test_usage_prints_a_table_and_finds_the_ledger_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "thrifty.yaml"
    config_file.write_text(
        f"server: {{data_dir: {tmp_path}}}\nmodels: [{{name: fast, deployments: [{{provider: local, model: smollm2}}]}}]\n"
    )
    await filled_ledger(make_config(tmp_path))
    assert usage_main(["--config", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["model", "requests", "errors"]
    assert "all-on-top" in out and "total" in out


def test_usage_without_a_ledger_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert usage_main(["--ledger", str(tmp_path / "none.db")]) == 1
    assert "no ledger at" in capsys.readouterr().err


def test_top_shows_live_figures_and_refreshes(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    obs = Observer(config)
    obs.mark_ready(0.9)
    for i in range(3):
        obs.record(event(i, ts=time.time(), **served("fast", "hit-exact" if i else "miss")))
    with serve(obs) as url:
        assert top_main(["--url", url, "--iterations", "2", "--interval", "0.01"]) == 0
    out = capsys.readouterr().out
    assert out.count("\x1b[2J") == 2  # two refreshes
    assert "requests \x1b[1m3\x1b[0m" in out
    assert "66.7%" in out  # cache hit rate
    assert "fast" in out and "chatcmpl-2" in out
    assert "startup time is 900 ms" in out


def test_top_against_nothing_fails_politely(capsys: pytest.CaptureFixture[str]) -> None:
    from .helpers import free_port

    assert top_main(["--url", f"http://127.0.0.1:{free_port()}", "--iterations", "1"]) == 1
    assert "cannot read" in capsys.readouterr().out


async def test_usage_since_a_date_or_a_duration(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    path = await filled_ledger(config)
    total = run_json(capsys, ["--since", "2023-11-15", "--ledger", path])[-1]
    assert total["requests"] == 2
    assert run_json(capsys, ["--since", "1d", "--ledger", path])[-1]["requests"] == 0  # all long ago
    assert usage_main(["--since", "last week", "--ledger", path]) == 2
    assert "--since must look like 7d" in capsys.readouterr().err


def test_sparkline_scales_to_the_busiest_bucket() -> None:
    from thrifty.observe.top import sparkline

    assert sparkline([0, 5, 10]) == "▁▅█"
    assert sparkline([]) == ""
