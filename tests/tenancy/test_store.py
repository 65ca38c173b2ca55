"""Keys, teams and spend on both databases: the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from thrifty.errors import InvalidRequest, NotFound
from thrifty.tenancy.policy import Budget, Limits, Policy, check_models, parse_duration
from thrifty.tenancy.store import KeyStore, Team, hash_secret


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> KeyStore:
    if request.param == "sqlite":
        s = KeyStore.open(f"sqlite:///{tmp_path / 'tenancy.db'}")
    else:
        s = KeyStore.open(request.getfixturevalue("postgres_url"))
    request.addfinalizer(s.close)
    return s


def test_budget_strings_parse_or_name_the_problem() -> None:
    assert Budget.parse("50/month") == Budget(50.0, "month")
    assert Budget.parse("$2.5/day") == Budget(2.5, "day")
    assert Budget.parse("10") == Budget(10.0, "total")
    for bad in ("fifty/month", "5/fortnight", "-3/day", "nan/day", ""):
        with pytest.raises(InvalidRequest) as err:
            Budget.parse(bad)
        assert err.value.param == "budget"


def test_durations_and_allow_lists_are_checked() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("90m") == 5400
    with pytest.raises(InvalidRequest):
        parse_duration("soon")
    with pytest.raises(InvalidRequest, match="does not serve: gpt-9"):
        check_models("fast,gpt-9", ["fast", "smart"])
    assert check_models("fast, smart,fast", ["fast", "smart"]) == ("fast", "smart")


def test_a_key_lifetime_is_more_than_nothing_and_at_most_a_century() -> None:
    # Found by the fuzzer: an expiry 1e300 s away could not be written back as JSON (a 500).
    assert parse_duration(3600) == 3600.0
    assert parse_duration("5200w") == 5200 * 7 * 86400
    for bad in (0, -1, 1e300, float("nan"), "0d", "99999999w", True):
        with pytest.raises(InvalidRequest) as err:
            parse_duration(bad)
        assert err.value.param == "expires"


def test_a_limit_written_with_a_fraction_of_zero_is_an_integer() -> None:
    # Found by the fuzzer: JSON Schema (so /openapi.json) counts 100.0 as an integer; the admin API refused it.
    assert Limits.parse({"rpm": 100.0, "tpm": 5000, "parallel": None}) == Limits(rpm=100, tpm=5000)
    for bad in (100.5, 2.0**60, 0.0, True):
        with pytest.raises(InvalidRequest) as err:
            Limits.parse({"rpm": bad})
        assert err.value.param == "rpm"


def test_secret_is_returned_once_and_stored_only_as_a_hash(store: KeyStore, tmp_path: Path) -> None:
    record, secret = store.create_key("ci-bot", policy=Policy(limits=Limits(rpm=600)))
    assert secret.startswith("tk-") and len(secret) > 30
    assert store.find(secret) == record
    assert store.find(secret + "x") is None
    if store.dialect == "sqlite":
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("tenancy.db*"))  # the file and its WAL
        assert secret.encode() not in raw and hash_secret(secret).encode() in raw


def test_duplicates_and_unknown_teams_leave_nothing_half_written(store: KeyStore) -> None:
    store.create_team(Team("search"))
    with pytest.raises(InvalidRequest, match="already exists"):
        store.create_team(Team("search"))
    store.create_key("bot", team="search")
    with pytest.raises(InvalidRequest, match="already exists"):
        store.create_key("bot", team="search")
    with pytest.raises(NotFound, match="No team named 'nope'"):
        store.create_key("other", team="nope")
    assert [k.name for k in store.list_keys()] == ["bot"]


def test_rotate_keeps_the_key_but_changes_the_secret(store: KeyStore) -> None:
    record, old = store.create_key("bot", policy=Policy(budget=Budget(5, "day")))
    rotated, new = store.rotate(record.id)
    assert rotated.id == record.id and rotated.policy == record.policy
    assert store.find(old) is None
    assert store.find(new) == rotated
    store.revoke(record.id)
    with pytest.raises(InvalidRequest, match="revoked"):
        store.rotate(record.id)
    assert not store.get_key(record.id).usable(now=2e9)


def test_spend_adds_up_per_scope_and_period(store: KeyStore) -> None:
    store.add_spend([("key:a", 0.0, 0.25, 1), ("team:t", 0.0, 0.25, 1)])
    store.add_spend([("key:a", 0.0, 0.5, 2), ("key:a", 86400.0, 1.0, 1)])
    assert store.spent("key:a", 0.0, 86400.0) == pytest.approx(0.75)
    assert store.spent("key:a", 0.0, float("inf")) == pytest.approx(1.75)
    spent, requests = store.spend_by_scope("key:")["key:a"]
    assert spent == pytest.approx(1.75) and requests == 4


def test_update_changes_policy_and_expiry(store: KeyStore) -> None:
    record, _ = store.create_key("bot")
    updated = store.update_key(record.id, Policy(models=("fast",), limits=Limits(tpm=1000)), expires_at=10.0)
    assert updated.policy.models == ("fast",) and updated.policy.limits.tpm == 1000
    assert not updated.usable(now=11.0)
    with pytest.raises(NotFound):
        store.update_key("key_missing", Policy(), None)
