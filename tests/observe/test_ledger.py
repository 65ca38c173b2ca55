"""The ledger: every recorded request becomes one row, written off the hot path."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from thrifty.config import Config
from thrifty.observe import Observer
from thrifty.observe.ledger import PromptRow
from thrifty.storage import Backoff

from .helpers import MINI, event, make_config, served


def rows(path: str, sql: str = "SELECT * FROM requests") -> list[sqlite3.Row]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def test_n_records_give_n_rows_after_aclose(config: Config) -> None:
    obs = Observer(config)
    await obs.start()
    for i in range(1234):
        obs.record(event(i))
    await obs.aclose()
    found = rows(obs.ledger_settings.path, "SELECT request_id FROM requests")
    assert sorted(r[0] for r in found) == sorted(f"chatcmpl-{i}" for i in range(1234))


async def test_rows_hold_the_request_its_cost_route_and_cache_outcome(config: Config) -> None:
    obs = Observer(config)
    await obs.start()
    obs.record(event(1, **served("fast", "miss"), ttft_s=0.05, stream=True))
    obs.record(event(2, status=502, error_type="upstream_error", prompt_tokens=0, completion_tokens=0))
    await obs.aclose()
    first, second = rows(obs.ledger_settings.path, "SELECT * FROM requests ORDER BY request_id")
    assert first["deployment"] == MINI and first["tier"] == "fast" and first["cache"] == "miss"
    assert first["stream"] == 1 and first["ttft_s"] == 0.05 and first["api_key"] == "k1"
    assert first["cost_usd"] > 0 and first["cost_top_usd"] > first["cost_usd"]
    assert first["route"] == "policy=rules model=fast escalations=0"
    assert json.loads(first["annotations"]) == {"cache": "miss", "route": first["route"]}
    assert second["status"] == 502 and second["error_type"] == "upstream_error" and second["cost_usd"] == 0


async def test_ledger_path_comes_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "usage.db"
    obs = Observer(make_config(tmp_path, ledger={"path": str(path)}))
    await obs.start()
    obs.record(event(1))
    await obs.aclose()
    assert len(rows(str(path))) == 1


async def test_a_second_run_appends_to_the_same_ledger(config: Config) -> None:
    for run in range(2):
        obs = Observer(config)
        await obs.start()
        obs.record(event(run))
        await obs.aclose()
    assert len(rows(Observer(config).ledger_settings.path)) == 2


async def test_closing_an_observer_that_never_started_is_harmless(config: Config) -> None:
    obs = Observer(config)
    obs.record(event(1))
    await obs.aclose()
    assert not Path(obs.ledger_settings.path).exists()


async def test_an_unreadable_ledger_is_set_aside_not_deleted(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    path = Path(Observer(config).ledger_settings.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    obs = Observer(config)
    await obs.start()
    obs.record(event(1))
    await obs.aclose()
    [kept] = path.parent.glob("ledger.db.corrupt-*")
    assert kept.read_bytes().startswith(b"this is not a database")
    assert len(rows(str(path))) == 1
    assert "moved it to" in caplog.text


async def test_a_malformed_event_is_skipped_and_the_rest_are_written(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    obs = Observer(config)
    await obs.start()
    obs.record(event(1))
    obs.record(event(2, prompt_tokens=None))  # a caller bug
    obs.record(event(3))
    await obs.aclose()
    assert sorted(r[0] for r in rows(obs.ledger_settings.path, "SELECT request_id FROM requests")) == [
        "chatcmpl-1",
        "chatcmpl-3",
    ]
    assert obs.dropped == 1 and "chatcmpl-2" in caplog.text


async def test_a_failing_disk_keeps_rows_and_retries_with_a_bounded_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    obs = Observer(make_config(tmp_path, ledger={"flush_ms": 600_000, "batch_rows": 1_000_000}))
    obs.outage.backoff = Backoff(first=1.0, most=2.0, clock=lambda: now[0])
    await obs.start()
    assert obs.ledger is not None
    real = obs.ledger.write
    failures = iter([True, True, True])
    tries = []

    def flaky(batch: list[tuple[object, ...]], prompts: Sequence[PromptRow] = ()) -> None:
        tries.append(now[0])
        if next(failures, False):
            raise sqlite3.OperationalError("disk I/O error")
        real(batch, prompts)

    monkeypatch.setattr(obs.ledger, "write", flaky)
    obs.record(event(1))
    for t in (0.0, 0.5, 1.0, 2.0, 3.0, 4.5, 5.0):
        now[0] = t
        assert obs.flush() == 0 or t == 5.0
    assert tries == [0.0, 1.0, 3.0, 5.0]  # 1 s, then 2 s, then 2 s: doubling, capped
    assert obs.degraded() == []
    await obs.aclose()
    assert len(rows(obs.ledger_settings.path)) == 1
