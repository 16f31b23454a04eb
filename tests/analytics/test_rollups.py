"""The daily rollups (docs/analytics.md, "Rollups") equal the figures computed from
scratch from the orders and the ledger, after replayed and concurrent payments, a
refund, a fold that dies half-way, money that moved while folding was off, history
from before the rollups, and across midnight in Asia/Shanghai."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kpay.core.analytics import rollups
from kpay.core.analytics.dashboard import dashboard
from kpay.testing import assert_books_balanced

BEIJING = ZoneInfo("Asia/Shanghai")
PAID = ("paid", "fulfilled", "refunded")


def local(instant: datetime) -> str:
    return instant.astimezone(BEIJING).date().isoformat()


@pytest.fixture(autouse=True)
def startup_fold_done(io_loop: Any, kpay_app: Any) -> None:
    """The start-up catch-up runs in the background: let it finish before a test adds
    history, or (on a loaded machine) it folds part of what the test folds itself."""
    if kpay_app.rollups.backfill is not None:
        io_loop.run_sync(lambda: kpay_app.rollups.backfill)


async def from_scratch(app: Any, owner: str | None, first: str, last: str) -> dict[str, Any]:
    """The figures of the range read straight from every order and ledger entry, in
    plain Python: what the rollups must add up to."""
    revenue: dict[str, dict[str, int]] = {}
    async for entry in app.store["ledger"].find({}):
        prefix = entry["_id"][:4]
        earned = {p["account"]: p["amount"] for p in entry["postings"]
                  if p["account"].startswith("earnings:")
                  and (owner is None or p["account"] == f"earnings:{owner}")}
        if not earned or prefix not in ("orde", "cons", "refu"):
            continue
        fee = sum(p["amount"] for p in entry["postings"]
                  if p["account"] == "platform:revenue")
        day = local(entry["created_at"])
        line = revenue.setdefault(day, {"sales": 0, "refunds": 0, "fees": 0})
        gross = sum(earned.values()) + fee
        line["sales" if prefix != "refu" else "refunds"] += gross if prefix != "refu" else -gross
        line["fees"] += fee
    orders = [o async for o in app.store["orders"].find({"status": {"$in": list(PAID)}})]
    mine = [o for o in orders if owner is None or o.get("seller") == owner]
    kinds: dict[str, list[int]] = {}
    products: dict[tuple[str, str], list[int]] = {}
    days_of: dict[str, set[str]] = {}
    for order in mine:
        day = local(order["paid_at"])
        days_of.setdefault(order["user_id"], set()).add(day)
        if not first <= day <= last:
            continue
        kinds.setdefault(order["kind"], [0, 0])
        kinds[order["kind"]][0] += 1
        kinds[order["kind"]][1] += order["amount"]
        if order["kind"] != "wallet_topup":
            products.setdefault((order["kind"], order["title"]), [0, 0])
            products[(order["kind"], order["title"])][0] += 1
            products[(order["kind"], order["title"])][1] += order["amount"]
    new: dict[str, int] = {}
    returning = 0
    for bought in days_of.values():
        if first <= min(bought) <= last:
            new[min(bought)] = new.get(min(bought), 0) + 1
        elif min(bought) < first and any(first <= d <= last for d in bought):
            returning += 1
    span = [(date.fromisoformat(first) + timedelta(days=i)).isoformat()
            for i in range((date.fromisoformat(last) - date.fromisoformat(first)).days + 1)]
    return {
        "revenue": [{"day": d, **revenue.get(d, {"sales": 0, "refunds": 0, "fees": 0})}
                    for d in span],
        "kinds": {k: tuple(v) for k, v in kinds.items()},
        "products": {k: tuple(v) for k, v in products.items()},
        "new": [new.get(d, 0) for d in span], "returning": returning}


async def from_rollups(app: Any, owner: str | None, first: str, last: str) -> dict[str, Any]:
    data = await dashboard(app, owner, date.fromisoformat(first), date.fromisoformat(last))
    return {
        "revenue": [{f: line[f] for f in ("day", "sales", "refunds", "fees")}
                    for line in data["revenue"]["daily"]],
        "kinds": {k["kind"]: (k["count"], k["amount"]) for k in data["orders_by_kind"]},
        "products": {(p["kind"], p["title"]): (p["count"], p["amount"])
                     for p in data["top_products"]},
        "new": [line["new"] for line in data["students"]["daily"]],
        "returning": data["students"]["returning"]}


async def assert_rollups_right(app: Any, first: str, last: str) -> None:
    for owner in ("seller1", None):
        for start in (first, last):  # the whole range, and its last day alone
            assert await from_rollups(app, owner, start, last) == \
                await from_scratch(app, owner, start, last), (owner, start)


async def buy(api, token, sku, channel="wallet"):
    status, body = await api.post("/api/v1/orders", {
        "item": {"kind": "test_gadget", "sku": sku}, "channel": channel}, token)
    assert status == 201, body
    return body["order"]


@pytest.mark.gen_test(timeout=120)
async def test_replayed_and_concurrent_payments_a_refund_and_a_failed_fold(
        api, kpay_app, monkeypatch):
    app = kpay_app
    amy, bob = await api.login("amy"), await api.login("bob")
    await api.topup(amy, 5000)
    first_day = local(app.clock.now())
    await buy(api, amy, "g999")
    small = await buy(api, amy, "g100")
    # Paid by a provider: fifty notifies at once, then the fulfilment run again.
    pending = await buy(api, bob, "g250", channel="native")
    paid = await asyncio.gather(*[app.money.orders.mark_paid(
        pending["id"], 250, source="external:fakepay", transaction_id="wx1", via="notify")
        for _ in range(50)])
    await app.money.orders.fulfil(paid[0])
    await app.rollups.catch_up()
    await app.rollups.catch_up()
    await assert_rollups_right(app, first_day, first_day)

    app.clock.advance(86_400)
    amy, bob = await api.login("amy"), await api.login("bob")
    # Money that moves while nothing folds (as after a crash right after the money
    # write) waits, unfolded, for the next catch-up.
    monkeypatch.setattr(app.rollups, "kick", lambda: None)
    await buy(api, amy, "g250")
    assert await app.store["orders"].count_documents({"rolled_up": None,
                                                      "status": {"$in": list(PAID)}}) == 1
    root = await api.login("root", "admin")
    status, body = await api.request("POST", f"/api/v1/admin/orders/{small['id']}/refund",
                                     {"amount": 100, "reason": "测试退款"}, root)
    assert status == 200, body

    # A fold that dies between its writes leaves nothing half-counted: the marks and
    # the sums are one transaction.
    class Broken:
        async def bulk_write(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("the node died mid-fold")
    real = app.rollups.daily
    monkeypatch.setattr(app.rollups, "daily", Broken())
    with pytest.raises(RuntimeError):
        await app.rollups.fold_once()
    assert await app.store["orders"].count_documents({"rolled_up": None,
                                                      "status": {"$in": list(PAID)}}) == 1
    monkeypatch.setattr(app.rollups, "daily", real)
    await assert_rollups_right(app, first_day, local(app.clock.now()))
    assert await app.store["orders"].count_documents({"rolled_up": None,
                                                      "status": {"$in": list(PAID)}}) == 0
    # Folding again finds nothing and changes nothing.
    assert await app.rollups.catch_up() == 0
    await assert_rollups_right(app, first_day, local(app.clock.now()))
    await assert_books_balanced(app)


@pytest.mark.gen_test(timeout=60)
async def test_wallet_top_ups_are_orders_but_not_products(api, kpay_app):
    amy = await api.login("amy")
    await api.topup(amy, 5000)
    await buy(api, amy, "g999")
    today = date.fromisoformat(local(kpay_app.clock.now()))
    data = await dashboard(kpay_app, None, today, today)
    assert {k["kind"] for k in data["orders_by_kind"]} == {"wallet_topup", "test_gadget"}
    assert [p["title"] for p in data["top_products"]] == ["gadget g999"]


@pytest.mark.kpay_now("2026-03-01T15:59:00Z")  # 23:59 in Beijing
@pytest.mark.gen_test(timeout=60)
async def test_a_day_ends_at_midnight_in_the_server_time_zone(api, kpay_app):
    amy, bob = await api.login("amy"), await api.login("bob")
    await api.topup(amy, 5000)
    await api.topup(bob, 5000)
    await buy(api, amy, "g999")
    kpay_app.clock.advance(60)  # 00:00 on 2 March in Beijing, still 1 March in UTC
    await buy(api, bob, "g250")
    await buy(api, amy, "g100")
    data = await dashboard(kpay_app, "seller1", date(2026, 3, 1), date(2026, 3, 2))
    assert [(d["day"], d["sales"]) for d in data["revenue"]["daily"]] == [
        ("2026-03-01", 999), ("2026-03-02", 350)]
    assert [d["new"] for d in data["students"]["daily"]] == [1, 1]
    later = await dashboard(kpay_app, "seller1", date(2026, 3, 2), date(2026, 3, 2))
    assert later["students"]["new"] == 1 and later["students"]["returning"] == 1
    await assert_rollups_right(kpay_app, "2026-03-01", "2026-03-02")


@pytest.mark.gen_test(timeout=120)
async def test_history_from_before_the_rollups_is_folded_in_batches(
        api, kpay_app, monkeypatch):
    app = kpay_app
    now = app.clock.now()
    orders, entries = [], []
    for i in range(23):  # written as before the rollups: no seller, no rolled_up
        paid_at = now - timedelta(hours=7 * i)
        buyer, amount = f"old{i % 5}", 1000 + i
        orders.append({"_id": f"old{i}", "out_trade_no": f"old{i}", "user_id": buyer,
                       "kind": "test_gadget", "item": {}, "title": f"旧商品 {i % 3}",
                       "amount": amount, "credits": [["earnings:seller1", amount - 200],
                                                     ["platform:revenue", 200]],
                       "channel": "wallet", "status": "fulfilled", "refunded": 0,
                       "refundable": amount, "created_at": paid_at, "paid_at": paid_at})
        entries.append({"_id": f"order:old{i}:pay", "created_at": paid_at, "memo": "",
                        "meta": {}, "postings": [
                            {"account": f"wallet:{buyer}", "amount": -amount},
                            {"account": "earnings:seller1", "amount": amount - 200},
                            {"account": "platform:revenue", "amount": 200}]})
    await app.store["orders"].insert_many(orders)
    await app.store["ledger"].insert_many(entries)
    monkeypatch.setattr(rollups, "BATCH", 4)
    # One batch, then (as after a restart) the rest: each batch is marked as it is added.
    assert await app.rollups.fold_once() == 8
    assert await app.rollups.catch_up() == 38
    assert await app.store["orders"].count_documents({"seller": "seller1"}) == 23
    first = local(now - timedelta(hours=7 * 22))
    await assert_rollups_right(app, first, local(now))


@pytest.mark.gen_test(timeout=60)
async def test_a_bad_record_is_left_out_and_reported_not_folded_forever(api, kpay_app):
    app = kpay_app
    now = app.clock.now()
    await app.store["orders"].insert_many([
        {"_id": "bad1", "user_id": "amy", "kind": "test_gadget", "title": "坏订单",
         "amount": "999", "credits": [], "status": "fulfilled", "paid_at": now},
        {"_id": "bad2", "out_trade_no": "bad2", "kind": "test_gadget", "status": "paid",
         "paid_at": now}])
    await app.store["ledger"].insert_one({"_id": "order:bad1:pay", "created_at": "today",
                                          "postings": []})
    amy = await api.login("amy")
    await api.topup(amy, 5000)
    await buy(api, amy, "g250")
    await app.rollups.catch_up()
    assert await app.rollups.catch_up() == 0
    subjects = {e["subject"] async for e in app.store["attention"].find(
        {"source": "analytics.rollups"})}
    assert subjects == {"order:bad1", "order:bad2", "ledger:order:bad1:pay"}
    await app.store["orders"].delete_many({"_id": {"$in": ["bad1", "bad2"]}})
    await assert_rollups_right(app, local(now), local(now))


@pytest.mark.gen_test(timeout=60)
async def test_money_that_moved_is_folded_in_the_background(api, kpay_app):
    # As on a node that runs the jobs (tests run them by hand: kpay.testing).
    kpay_app.scheduler.enabled = True
    amy = await api.login("amy")
    await api.topup(amy, 5000)
    await buy(api, amy, "g250")
    pending = {"rolled_up": None, "status": {"$in": list(PAID)}}
    for _ in range(200):  # the kick's fold runs in the background: wait for it
        if not await kpay_app.store["orders"].count_documents(pending) and \
                not await kpay_app.store["ledger"].count_documents({"rolled_up": None}):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("not folded after money moved")
    day = local(kpay_app.clock.now())
    line = await kpay_app.store["analytics_daily"].find_one({"_id": f"seller1|{day}"})
    assert line["sales"] == 250 and line["new"] == 1


async def bought_unfolded(api: Any, app: Any, monkeypatch: Any, *skus: str) -> str:
    """Everything folded, then ``skus`` bought by amy and not folded (no background
    fold); returns the local day."""
    amy = await api.login("amy")
    await api.topup(amy, 5000)
    day = local(app.clock.now())
    await app.rollups.catch_up()
    monkeypatch.setattr(app.rollups, "kick", lambda: None)
    for sku in skus:
        await buy(api, amy, sku)
    return day


@pytest.mark.gen_test(timeout=60)
async def test_a_node_stopping_between_the_fold_and_the_marks_counts_once(
        api, kpay_app, monkeypatch):
    # The orders are marked after the fold's transaction (no open fold holds an order a
    # refund needs); a node that stops in between leaves them unmarked but recorded in
    # analytics_folded: the next fold marks them and does not count them again.
    app = kpay_app
    day = await bought_unfolded(api, app, monkeypatch, "g999", "g250")

    async def stopped(marks: dict) -> None:
        raise RuntimeError("the node stopped after the commit")

    monkeypatch.setattr(app.rollups, "_mark_orders", stopped)
    with pytest.raises(RuntimeError):
        await app.rollups.fold_once()
    monkeypatch.undo()
    pending = {"rolled_up": None, "status": {"$in": list(PAID)}}
    assert await app.store["orders"].count_documents(pending) == 2
    await app.rollups.catch_up()
    assert await app.store["orders"].count_documents(pending) == 0
    await assert_rollups_right(app, day, day)


@pytest.mark.gen_test(timeout=60)
async def test_a_batch_held_by_a_dead_nodes_transaction_waits_for_the_next_run(
        api, kpay_app, monkeypatch):
    # A node killed mid-fold leaves its transaction open until the database drops it
    # (a minute). The folds after it must not wait that long (a dev clock move runs the
    # fold and a dashboard read folds first): they leave the batch to the next run.
    app = kpay_app
    day = await bought_unfolded(api, app, monkeypatch, "g999")
    async with app.store.client.start_session() as dead:
        await dead.start_transaction()
        await app.rollups._fold_orders(dead)  # the killed node's open fold
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(app.rollups.catch_up(), 20)
        assert asyncio.get_running_loop().time() - started < 10
        pending = {"rolled_up": None, "status": {"$in": list(PAID)}}
        assert await app.store["orders"].count_documents(pending) == 1
        status, _ = await api.get("/api/v1/analytics/dashboard", await api.login("root", "admin"))
        assert status == 200
        await dead.abort_transaction()  # what the database does after its lifetime
    await app.rollups.catch_up()
    assert await app.store["orders"].count_documents(pending) == 0
    await assert_rollups_right(app, day, day)
