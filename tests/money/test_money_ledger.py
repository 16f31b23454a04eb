"""The ledger: balanced, idempotent postings, the wallet guard, holds, pagination."""

import asyncio

import pytest

from kpay.core.errors import BadRequest, Conflict, InsufficientBalance
from kpay.core.money.accounts import split_fee
from kpay.core.money.refunds import refund_debits

IN = "external:test"


async def fund(app, user, amount, key=None):
    return await app.money.ledger.post(key or f"fund:{user}:{amount}",
                                       [(IN, -amount), (f"wallet:{user}", amount)], "fund")


async def account_docs(app):
    return {d["_id"]: d async for d in app.store["accounts"].find({})}


@pytest.mark.gen_test
async def test_replay_with_same_key_returns_first_and_writes_once(kpay_app):
    ledger = kpay_app.money.ledger
    first = await ledger.post("k1", [(IN, -500), ("wallet:amy", 500)], "first")
    again = await ledger.post("k1", [("wallet:amy", 500), (IN, -500)], "second memo")
    assert not first.replayed and again.replayed
    assert again.created_at == first.created_at and again.memo == "first"
    assert await ledger.balance("wallet:amy") == 500
    assert await kpay_app.store["ledger"].count_documents({}) == 1


@pytest.mark.gen_test
async def test_same_key_other_postings_is_409_and_changes_nothing(kpay_app):
    ledger = kpay_app.money.ledger
    await ledger.post("k1", [(IN, -500), ("wallet:amy", 500)])
    before = await account_docs(kpay_app)
    with pytest.raises(Conflict) as e:
        await ledger.post("k1", [(IN, -600), ("wallet:amy", 600)])
    assert e.value.code == "idempotency_conflict" and e.value.status == 409
    assert await account_docs(kpay_app) == before


@pytest.mark.gen_test
async def test_concurrent_replays_of_one_key_write_once(kpay_app):
    ledger = kpay_app.money.ledger
    results = await asyncio.gather(*[
        ledger.post("same", [(IN, -100), ("wallet:amy", 100)]) for _ in range(10)])
    assert sum(not r.replayed for r in results) == 1
    assert await ledger.balance("wallet:amy") == 100
    assert await ledger.balance(IN) == -100


@pytest.mark.gen_test
@pytest.mark.parametrize("postings, code", [
    ([(IN, -100), ("wallet:amy", 99)], "unbalanced_postings"),
    ([(IN, -100), ("wallet:amy", 100.0)], "invalid_postings"),
    ([(IN, -1), ("wallet:amy", True)], "invalid_postings"),
    ([("nocolon", -100), ("wallet:amy", 100)], "invalid_postings"),
    ([(":x", -100), ("wallet:amy", 100)], "invalid_postings"),
    ([], "invalid_postings"),
    ([("wallet:amy", 100), ("wallet:amy", -100)], "invalid_postings"),
])
async def test_bad_postings_refused_and_nothing_written(kpay_app, postings, code):
    with pytest.raises(BadRequest) as e:
        await kpay_app.money.ledger.post("bad", postings)
    assert e.value.code == code
    assert await kpay_app.store["ledger"].count_documents({}) == 0
    assert await kpay_app.store["accounts"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_wallet_never_below_zero_and_failed_post_writes_nothing(kpay_app):
    ledger = kpay_app.money.ledger
    await fund(kpay_app, "amy", 300)
    with pytest.raises(InsufficientBalance) as e:
        await ledger.post("spend", [("wallet:amy", -301), ("platform:revenue", 301)])
    assert e.value.status == 402 and e.value.details == {"needed": 301, "balance": 300}
    assert await ledger.balance("wallet:amy") == 300
    assert await ledger.balance("platform:revenue") == 0
    assert await kpay_app.store["ledger"].find_one({"_id": "spend"}) is None
    with pytest.raises(InsufficientBalance):  # a wallet that never existed
        await ledger.post("spend2", [("wallet:nobody", -1), ("platform:revenue", 1)])


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_spends_take_exactly_the_balance(kpay_app):
    ledger = kpay_app.money.ledger
    await fund(kpay_app, "amy", 1000)
    results = await asyncio.gather(*[
        ledger.post(f"spend{i}", [("wallet:amy", -150), (f"earnings:s{i % 3}", 150)])
        for i in range(12)], return_exceptions=True)
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, InsufficientBalance)]
    assert len(ok) == 6 and len(refused) == 6
    assert await ledger.wallet("amy") == {"balance": 100, "held": 0, "available": 100}


# -- ledger pagination ------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_ledger_pages_with_limit_and_before(api, kpay_app):
    token = await api.login("amy")
    other = await api.login("bob")
    # Twelve entries written at once (many share a millisecond) plus one of bob's.
    await asyncio.gather(*[fund(kpay_app, "amy", 10 + i) for i in range(12)])
    await fund(kpay_app, "bob", 5)
    seen = []
    before = None
    while True:
        path = "/api/v1/wallet/ledger?limit=5" + (f"&before={before}" if before else "")
        status, page = await api.get(path, token)
        assert status == 200 and len(page["entries"]) <= 5
        seen += page["entries"]
        before = page["next_before"]
        if before is None:
            break
    assert sorted(e["amount"] for e in seen) == [10 + i for i in range(12)]
    assert len({e["key"] for e in seen}) == 12
    times = [e["created_at"] for e in seen]
    assert times == sorted(times, reverse=True)
    status, bob_page = await api.get("/api/v1/wallet/ledger", other)
    assert [e["amount"] for e in bob_page["entries"]] == [5]
    # A time cursor: nothing before the first entry.
    status, page = await api.get(f"/api/v1/wallet/ledger?before={times[-1]}", token)
    assert status == 200 and page["entries"] == []
    # Someone else's key, an unknown key and a bad limit are 400s.
    bob_key = bob_page["entries"][0]["key"]
    for query in (f"before={bob_key}", "before=nope", "limit=0", "limit=abc"):
        status, body = await api.get(f"/api/v1/wallet/ledger?{query}", token)
        assert status == 400 and body["error"]["code"] == "invalid_field", query


# -- pure helpers -------------------------------------------------------------------------


def test_split_fee_loses_no_fen():
    for amount in (0, 1, 7, 99, 100, 12345):
        earned, fee = split_fee(amount, 2000)
        assert earned + fee == amount and fee == amount * 2000 // 10_000
    with pytest.raises(ValueError):
        split_fee(-1, 2000)


def test_refund_debits_add_up_and_end_exact():
    credits = [["earnings:bob", 50], ["earnings:cat", 25], ["platform:revenue", 25]]
    reversed_so_far: dict[str, int] = {}
    for _ in range(100):
        debits = refund_debits(credits, list(reversed_so_far.items()), 1)
        assert sum(d for _, d in debits) == -1 and all(d < 0 for _, d in debits)
        for account, debit in debits:
            reversed_so_far[account] = reversed_so_far.get(account, 0) - debit
            assert reversed_so_far[account] <= dict(credits)[account]
    assert reversed_so_far == {a: v for a, v in credits}
    with pytest.raises(ValueError):
        refund_debits(credits, list(reversed_so_far.items()), 1)


@pytest.mark.gen_test(timeout=60)
async def test_first_postings_racing_to_new_accounts_all_land(kpay_app):
    # Each post upserts the same two new account documents: the losers must retry,
    # not fail with a duplicate key.
    ledger = kpay_app.money.ledger
    await asyncio.gather(*[
        ledger.post(f"new{i}", [("escrow:fresh", -5), ("platform:fresh", 5)])
        for i in range(15)])
    assert await ledger.balance("platform:fresh") == 75
    assert await ledger.balance("escrow:fresh") == -75
