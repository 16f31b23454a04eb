"""Ledger.post_many: many ledger transactions in one MongoDB transaction, three commands."""

import asyncio

import pytest

from kpay.core.errors import BadRequest
from kpay.core.metrics import commands_since, db_commands
from kpay.core.money.ledger import Movement, StaleBatch

IN = "external:test"


async def fund(app, user, amount):
    await app.money.ledger.post(f"fund:{user}:{amount}",
                                [(IN, -amount), (f"wallet:{user}", amount)], "fund")


def spend(key, user, amount, earner="bob"):
    return Movement(key, [(f"wallet:{user}", -amount), (f"earnings:{earner}", amount - 1),
                          ("platform:revenue", 1)], f"spend {amount}", {"n": amount})


async def post_many(app, movements):
    return await app.store.transaction(lambda s: app.money.ledger.post_many(s, movements))


async def balances(app):
    return {d["_id"]: (d["balance"], d.get("available"))
            async for d in app.store["accounts"].find({})}


@pytest.mark.gen_test
async def test_many_movements_in_three_commands_with_exact_balances(kpay_app):
    for user in ("amy", "ben", "cid"):
        await fund(kpay_app, user, 1_000)
    movements = [spend(f"m{i}", user, 10 + i) for i, user in enumerate(["amy", "ben", "cid"] * 10)]
    before = db_commands()
    batch = await post_many(kpay_app, movements)
    # The wallet read, the summed account updates, the entries, the commit.
    assert commands_since(before) == {"find": 1, "update": 1, "insert": 1,
                                      "commitTransaction": 1}
    assert [t.key for t in batch.posted] == [m.key for m in movements] and batch.short == []
    spent = {u: sum(10 + i for i in range(30) if ["amy", "ben", "cid"][i % 3] == u)
             for u in ("amy", "ben", "cid")}
    ledger = kpay_app.money.ledger
    for user, amount in spent.items():
        assert batch.wallets[f"wallet:{user}"] == 1_000 - amount
        assert await ledger.wallet(user) == {"balance": 1_000 - amount, "held": 0,
                                             "available": 1_000 - amount}
    total = sum(spent.values())
    assert await ledger.balance("earnings:bob") == total - 30
    assert await ledger.balance("platform:revenue") == 30
    # Each entry is what post would have written: posting one again is a replay.
    again = await ledger.post("m4", movements[4].postings, "other memo")
    assert again.replayed and again.memo == "spend 14" and again.meta == {"n": 14}
    assert await kpay_app.store["ledger"].count_documents({"_id": {"$regex": "^m"}}) == 30


@pytest.mark.gen_test
async def test_a_movement_a_wallet_cannot_pay_is_left_out_in_order(kpay_app):
    await fund(kpay_app, "amy", 250)
    await fund(kpay_app, "ben", 50)
    movements = [spend("a1", "amy", 100), spend("b1", "ben", 60), spend("a2", "amy", 100),
                 spend("a3", "amy", 100), spend("a4", "amy", 50)]
    batch = await post_many(kpay_app, movements)
    assert [t.key for t in batch.posted] == ["a1", "a2", "a4"]
    assert [m.key for m in batch.short] == ["b1", "a3"]
    assert batch.wallets == {"wallet:amy": 0, "wallet:ben": 50}
    assert (await kpay_app.money.ledger.wallet("amy"))["available"] == 0
    assert await kpay_app.store["ledger"].count_documents({"_id": {"$in": ["b1", "a3"]}}) == 0


@pytest.mark.gen_test
async def test_a_used_key_rejects_the_whole_batch_and_writes_nothing(kpay_app):
    await fund(kpay_app, "amy", 1_000)
    await kpay_app.money.ledger.post("a2", spend("a2", "amy", 100).postings)
    before = await balances(kpay_app)
    with pytest.raises(StaleBatch):
        await post_many(kpay_app, [spend("a1", "amy", 100), spend("a2", "amy", 100),
                                   spend("a3", "amy", 100)])
    assert await balances(kpay_app) == before
    assert await kpay_app.store["ledger"].count_documents({"_id": {"$in": ["a1", "a3"]}}) == 0


@pytest.mark.gen_test
@pytest.mark.parametrize("movements, code", [
    ([spend("a1", "amy", 10), spend("a1", "amy", 10)], "invalid_postings"),
    ([spend("a1", "amy", 10), Movement("a2", [("wallet:amy", -10), ("earnings:bob", 9)])],
     "unbalanced_postings"),
    ([Movement("a1", [("wallet:amy", -1.5), ("earnings:bob", 1.5)])], "invalid_postings"),
])
async def test_bad_batches_are_refused_before_any_write(kpay_app, movements, code):
    await fund(kpay_app, "amy", 1_000)
    before = await balances(kpay_app)
    with pytest.raises(BadRequest) as e:
        await post_many(kpay_app, movements)
    assert e.value.code == code
    assert await balances(kpay_app) == before
    assert await kpay_app.store["ledger"].count_documents({}) == 1


@pytest.mark.gen_test
async def test_credits_reach_wallets_that_do_not_exist_yet(kpay_app):
    batch = await post_many(kpay_app, [
        Movement("gift1", [(IN, -70), ("wallet:new", 70)]),
        Movement("gift2", [(IN, -30), ("wallet:new", 30)])])
    assert batch.wallets == {"wallet:new": 100}
    assert await kpay_app.money.ledger.wallet("new") == {"balance": 100, "held": 0,
                                                         "available": 100}


@pytest.mark.gen_test(timeout=60)
async def test_batches_racing_spends_never_overdraw(kpay_app):
    # Batches and single posts race on the same wallets; whatever interleaving the
    # database allows, a wallet never goes below zero and every fen is accounted for.
    users = [f"u{i}" for i in range(6)]
    for user in users:
        await fund(kpay_app, user, 500)
    ledger = kpay_app.money.ledger

    async def batch(round_no):
        try:
            return await post_many(kpay_app, [spend(f"b{round_no}:{u}", u, 70) for u in users])
        except StaleBatch:
            return None

    async def single(round_no, user):
        try:
            await ledger.post(f"s{round_no}:{user}", spend("", user, 90).postings)
        except Exception as e:  # InsufficientBalance once the wallet is spent
            return e

    await asyncio.gather(*[batch(r) for r in range(5)],
                         *[single(r, u) for r in range(4) for u in users])
    for user in users:
        wallet = await ledger.wallet(user)
        assert wallet["available"] >= 0
        booked = 0
        async for entry in kpay_app.store["ledger"].find({"postings.account": f"wallet:{user}"}):
            booked += sum(p["amount"] for p in entry["postings"]
                          if p["account"] == f"wallet:{user}")
        assert wallet["balance"] == booked
        assert booked < 500  # some spends landed
