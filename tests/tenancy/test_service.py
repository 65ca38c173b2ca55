"""Identify, admit, settle: budgets refused before money is spent, limits at key and team level."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from thrifty.errors import AuthenticationError, NotFound, RateLimited
from thrifty.tenancy.counters import LocalCounters
from thrifty.tenancy.policy import Budget, Limits, Policy
from thrifty.tenancy.service import BudgetExceeded, Tenancy
from thrifty.tenancy.store import KeyStore, Team

PRICE = (1e-6, 2e-6)  # USD per input / output token


def make(tmp_path: Path, **kw: object) -> Tenancy:
    store = KeyStore.open(str(tmp_path / "tenancy.db"))
    return Tenancy(store, LocalCounters(), max_price=lambda m: PRICE, max_output=lambda m: 1000, **kw)  # type: ignore[arg-type]


async def test_unknown_secret_is_not_a_virtual_key(tmp_path: Path) -> None:
    t = make(tmp_path)
    assert await t.identify("sk-something-else") is None
    await t.aclose()


async def test_budget_refuses_before_spending_and_says_what_and_when(tmp_path: Path) -> None:
    t = make(tmp_path)
    _, secret = t.store.create_key("bot", policy=Policy(budget=Budget(0.01, "day")))
    who = await t.identify(secret)
    assert who is not None
    # worst case of one request: 1000 prompt + 1000 output tokens = $0.003
    tickets = []
    for i in range(3):
        tickets.append(await t.admit(who, "fast", 1000, None, f"r{i}"))
    with pytest.raises(BudgetExceeded) as err:
        await t.admit(who, "fast", 1000, None, "r3")
    assert err.value.status == 429 and err.value.code == "budget_exceeded"
    assert "$0.01 per day" in err.value.message and "resets at" in err.value.message
    assert err.value.headers()["retry-after"]
    # the answers were cheap: settling frees the reservation, and the next request fits
    for ticket in tickets:
        t.settle(ticket, tokens=30, cost_usd=0.0001)
    await t.admit(who, "fast", 1000, None, "r4")
    await t.aclose()
    assert t.store.spent(f"key:{who.key.id}", 0, float("inf")) == pytest.approx(0.0003)


async def test_team_limit_binds_every_key_of_the_team(tmp_path: Path) -> None:
    t = make(tmp_path)
    t.store.create_team(Team("search", Policy(limits=Limits(rpm=3))))
    secrets = [
        t.store.create_key(f"k{i}", team="search", policy=Policy(limits=Limits(rpm=100)))[1] for i in range(2)
    ]
    who = [await t.identify(s) for s in secrets]
    for i in range(3):
        await t.admit(who[i % 2], "fast", 10, 10, f"r{i}")  # type: ignore[arg-type]
    with pytest.raises(RateLimited, match="team 'search'") as err:
        await t.admit(who[1], "fast", 10, 10, "r3")  # type: ignore[arg-type]
    assert err.value.retry_after is not None and err.value.retry_after > 0
    await t.aclose()


async def test_model_allow_list_the_stricter_wins(tmp_path: Path) -> None:
    t = make(tmp_path)
    t.store.create_team(Team("t", Policy(models=("fast",))))
    _, secret = t.store.create_key("k", team="t", policy=Policy(models=("fast", "smart")))
    who = await t.identify(secret)
    assert who is not None
    await t.admit(who, "fast", 1, 1, "r1")
    with pytest.raises(NotFound, match="not available to team 't'"):
        await t.admit(who, "smart", 1, 1, "r2")
    await t.aclose()


async def test_rate_limit_headers_follow_openai_names(tmp_path: Path) -> None:
    t = make(tmp_path)
    _, secret = t.store.create_key("k", policy=Policy(limits=Limits(rpm=10, tpm=5000)))
    who = await t.identify(secret)
    assert who is not None
    ticket = await t.admit(who, "fast", 100, 50, "r1")
    assert ticket.headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-limit-tokens": "5000",
        "x-ratelimit-remaining-tokens": "4850",
    }
    await t.aclose()


async def test_revoked_key_is_refused_once_the_cache_expires(tmp_path: Path) -> None:
    t = make(tmp_path, cache_ttl=0.2)
    record, secret = t.store.create_key("k")
    assert await t.identify(secret) is not None
    t.store.revoke(record.id)
    await asyncio.sleep(0.5)  # beyond 2 x cache_ttl: a stale copy answers at most that long
    with pytest.raises(AuthenticationError, match="revoked"):
        await t.identify(secret)
    await t.aclose()


async def test_expired_key_is_refused(tmp_path: Path) -> None:
    t = make(tmp_path)
    _, secret = t.store.create_key("k", expires_at=1.0)
    with pytest.raises(AuthenticationError, match="expired"):
        await t.identify(secret)
    await t.aclose()


async def test_several_choices_reserve_several_answers(tmp_path: Path) -> None:
    t = make(tmp_path)
    _, secret = t.store.create_key("k", policy=Policy(limits=Limits(tpm=1000)))
    who = await t.identify(secret)
    assert who is not None
    await t.admit(who, "fast", 100, 300, "r1", choices=3)  # 100 + 3 x 300 = 1000 tokens: fits exactly
    with pytest.raises(RateLimited, match="tokens per minute"):
        await t.admit(who, "fast", 1, 1, "r2")
    await t.aclose()
