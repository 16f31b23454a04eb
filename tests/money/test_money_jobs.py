"""Money jobs (fulfil_paid, settle_pending) and reconciliation of the books."""

import asyncio
import subprocess
import sys
from datetime import timedelta

import pytest
from money_fakes import ORDERS, pending_order

from kpay.core.money.providers import PaymentState
from kpay.core.money.reconcile import reconcile
from kpay.testing import run_kpay

# -- fulfil_paid ---------------------------------------------------------------------


@pytest.mark.gen_test
async def test_failed_fulfilment_leaves_order_paid_and_job_fulfils_once(
        api, kpay_app, money_plugin):
    token = await api.login("amy")
    await api.topup(token, 1000)
    money_plugin.kind.fail_every_first = True
    status, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": "g100"},
                                           "channel": "wallet"}, token)
    # The money is booked, so the order exists and says so; delivery comes later.
    assert status == 201 and body["order"]["status"] == "paid"
    order_id = body["order"]["id"]
    assert money_plugin.kind.fulfils == {} and order_id not in money_plugin.paid
    stored = await kpay_app.money.orders.get(order_id)
    assert "fulfilment crashed" in stored["fulfil_error"]
    await kpay_app.advance_clock(30)  # too soon: the request may still be fulfilling
    assert (await kpay_app.money.orders.get(order_id))["status"] == "paid"
    await kpay_app.advance_clock(31)
    assert (await kpay_app.money.orders.get(order_id))["status"] == "fulfilled"
    await kpay_app.advance_clock(120)
    assert money_plugin.kind.fulfils == {order_id: 1}
    assert money_plugin.paid.count(order_id) == 1
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 900


@pytest.mark.gen_test
async def test_failed_fulfilment_after_a_notify_is_not_an_error(api, kpay_app, money_plugin):
    token = await api.login("amy")
    money_plugin.kind.fail_every_first = True
    order = await pending_order(api, token)
    status, body = await api.post(f"/api/v1/dev/orders/{order['id']}/pay", token=token)
    assert status == 200 and body["order"]["status"] == "paid"
    status, body = await api.post("/api/v1/dev/clock", {"advance": 61}, token)
    assert status == 200
    status, body = await api.get(f"{ORDERS}/{order['id']}", token)
    assert body["order"]["status"] == "fulfilled"
    assert money_plugin.kind.fulfils == {order["id"]: 1}


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_fulfil_calls_run_the_kind_once(api, kpay_app, money_plugin):
    token = await api.login("amy")
    await api.topup(token, 1000)
    money_plugin.kind.fail_every_first = True
    _, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": "g100"},
                                      "channel": "wallet"}, token)
    order = await kpay_app.money.orders.get(body["order"]["id"])
    results = await asyncio.gather(*[kpay_app.money.orders.fulfil(order) for _ in range(10)])
    assert {r["status"] for r in results} <= {"paid", "fulfilled"}
    # After the failure every caller honours the back-off; the job fulfils it after.
    assert money_plugin.kind.attempts[order["_id"]] == 1
    results = await asyncio.gather(*[kpay_app.money.orders.fulfil(order) for _ in range(10)])
    assert money_plugin.kind.attempts[order["_id"]] == 1
    await kpay_app.advance_clock(61)
    results = await asyncio.gather(*[kpay_app.money.orders.fulfil(order) for _ in range(10)])
    assert money_plugin.kind.fulfils == {order["_id"]: 1}
    assert money_plugin.paid.count(order["_id"]) == 1


# -- settle_pending ------------------------------------------------------------------


@pytest.mark.gen_test
async def test_settle_pending_books_a_paid_order_once_never_before_5_minutes(
        api, kpay_app, money_plugin):
    token = await api.login("amy")
    order = await pending_order(api, token)
    fake = money_plugin.provider
    fake.states[order["id"]] = PaymentState("paid", 100, "wx-q1")
    await kpay_app.advance_clock(4 * 60)
    assert fake.queried == []
    assert (await kpay_app.money.orders.get(order["id"]))["status"] == "pending"
    await kpay_app.advance_clock(61)
    assert fake.queried == [order["id"]]
    stored = await kpay_app.money.orders.get(order["id"])
    assert stored["status"] == "fulfilled" and stored["paid_via"] == "query"
    assert stored["transaction_id"] == "wx-q1"
    await kpay_app.advance_clock(60)
    await kpay_app.money.settle_pending()
    assert fake.queried == [order["id"]]  # no longer pending: not asked again
    assert await kpay_app.store["ledger"].count_documents(
        {"_id": f"order:{order['id']}:pay"}) == 1
    assert money_plugin.kind.fulfils == {order["id"]: 1}


@pytest.mark.gen_test
async def test_settle_pending_closes_expired_orders_through_the_provider(
        api, kpay_app, money_plugin):
    token = await api.login("amy")
    order = await pending_order(api, token)
    fake = money_plugin.provider
    await kpay_app.advance_clock(6 * 60)  # old enough to ask, not expired (30 min)
    assert fake.queried == [order["id"]] and fake.closed == []
    assert (await kpay_app.money.orders.get(order["id"]))["status"] == "pending"
    await kpay_app.advance_clock(25 * 60)
    assert fake.closed == [order["id"]]
    stored = await kpay_app.money.orders.get(order["id"])
    assert stored["status"] == "closed" and stored["close_reason"] == "expired"
    assert money_plugin.kind.released == [order["id"]]
    status, body = await api.post(f"/api/v1/dev/orders/{order['id']}/pay", token=token)
    assert status == 409 and body["error"]["code"] == "order_closed"


@pytest.mark.gen_test
async def test_settle_pending_keeps_orders_the_provider_cannot_close(
        api, kpay_app, money_plugin):
    token = await api.login("amy")
    order = await pending_order(api, token)
    other = await pending_order(api, token, "g250")
    fake = money_plugin.provider
    fake.refuse_close = True
    fake.states[other["id"]] = PaymentState("closed")
    await kpay_app.advance_clock(31 * 60)
    # Paid at the last second: the close is refused, the order stays pending ...
    assert (await kpay_app.money.orders.get(order["id"]))["status"] == "pending"
    # ... while one the provider reports closed is closed without asking it to close.
    assert (await kpay_app.money.orders.get(other["id"]))["status"] == "closed"
    fake.states[order["id"]] = PaymentState("paid", 100, "wx-late")
    await kpay_app.advance_clock(60)
    assert (await kpay_app.money.orders.get(order["id"]))["status"] == "fulfilled"


@pytest.mark.gen_test
async def test_settle_pending_ignores_a_paid_state_with_another_amount(
        api, kpay_app, money_plugin):
    token = await api.login("amy")
    order = await pending_order(api, token)
    money_plugin.provider.states[order["id"]] = PaymentState("paid", 1, "wx-bad")
    await kpay_app.advance_clock(6 * 60)
    assert (await kpay_app.money.orders.get(order["id"]))["status"] == "pending"
    assert await kpay_app.store["ledger"].count_documents({}) == 0


# -- reconcile ---------------------------------------------------------------------------


async def some_flows(api, kpay_app):
    token = await api.login("amy")
    await api.topup(token, 1000)
    _, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": "g250"},
                                      "channel": "wallet"}, token)
    await kpay_app.money.orders.refund(body["order"]["id"], 50, "partial")
    await pending_order(api, token)
    return body["order"]["id"]


@pytest.mark.gen_test
async def test_reconcile_is_clean_after_flows(api, kpay_app):
    await some_flows(api, kpay_app)
    report = await reconcile(kpay_app.store.db, kpay_app.clock.now())
    assert report.clean, report.text()
    assert report.transactions == 3 and report.orders == 3
    assert report.text().endswith("clean")


@pytest.mark.gen_test
@pytest.mark.books_may_break
async def test_reconcile_finds_planted_breaks(api, kpay_app):
    order_id = await some_flows(api, kpay_app)
    db = kpay_app.store.db
    # upsert: earnings credits land on shard documents (docs/money.md "Hot accounts")
    await db["accounts"].update_one({"_id": "earnings:seller1"}, {"$inc": {"balance": 7}},
                                    upsert=True)
    await db["ledger"].insert_one({"_id": "forged", "postings": [
        {"account": "wallet:eve", "amount": 500}], "created_at": kpay_app.clock.now()})
    await db["accounts"].insert_one({"_id": "wallet:eve", "balance": 500, "held": 0,
                                     "available": 500})
    await db["accounts"].insert_one({"_id": "wallet:neg", "balance": -1, "held": 0,
                                     "available": -1})
    await db["orders"].update_one({"_id": order_id}, {"$set": {
        "status": "paid", "paid_at": kpay_app.clock.now() - timedelta(minutes=11)}})
    await db["accounts"].update_one({"_id": "wallet:amy"},
                                    {"$inc": {"held": 100, "available": -100}})
    report = await reconcile(db, kpay_app.clock.now())
    text = report.text()
    assert not report.clean
    assert "account earnings:seller1: balance 167 but postings sum to 160" in text
    assert "ledger forged: postings sum to 500, not 0" in text
    assert "wallet wallet:neg is negative" in text
    assert f"order {order_id}: paid but not fulfilled" in text
    assert "wallet wallet:amy: held 100 but nothing holds money" in text
    assert "account wallet:neg: balance -1 but postings sum to 0" in text


@pytest.mark.books_may_break
def test_kpay_reconcile_command_exits_non_zero_on_a_break(api, kpay_app, io_loop, tmp_path):
    settings = kpay_app.settings
    config = tmp_path / "kpay.toml"
    config.write_text(f'[mongodb]\nuri = "{settings.mongodb.uri}"\n'
                      f'database = "{settings.mongodb.database}"\n'
                      '[dev]\nenabled = true\n[plugins]\nenabled = []\n')
    io_loop.run_sync(lambda: some_flows(api, kpay_app))
    command = [sys.executable, "-m", "kpay.cli", "--config", str(config), "reconcile"]
    clean = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.strip().endswith("clean")
    io_loop.run_sync(lambda: kpay_app.store["accounts"].update_one(
        {"_id": "platform:revenue"}, {"$inc": {"balance": 1}}, upsert=True))
    broken = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1
    assert "account platform:revenue: balance" in broken.stdout


@pytest.mark.gen_test
async def test_kpay_reconcile_judges_time_on_the_app_clock(api, kpay_app, money_plugin,
                                                            tmp_path):
    # An order paid seconds ago on the app's clock, which runs months before the wall
    # clock here: on the wall clock it would look stuck for months.
    token = await api.login("amy")
    await api.topup(token, 1000)
    money_plugin.kind.fail_every_first = True
    status, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": "g100"},
                                           "channel": "wallet"}, token)
    assert status == 201 and body["order"]["status"] == "paid"
    result = await run_kpay(kpay_app, tmp_path, "reconcile")
    assert result.returncode == 0, result.stdout + result.stderr
    await kpay_app.advance_clock(11 * 60)  # now it really is stuck (the job fulfils it)
