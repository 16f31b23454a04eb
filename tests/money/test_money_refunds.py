"""Refunds: full, partial, over-refund, replays, concurrency, to the wallet and back
through the provider."""

import asyncio

import pytest
from money_fakes import ORDERS, paid_order, wallet_order

from kpay.core.errors import BadRequest, Conflict, PaymentProviderError


async def balances(app, *names):
    return {name: await app.money.ledger.balance(name) for name in names}


PARTIES = ("wallet:amy", "earnings:seller1", "platform:revenue")


@pytest.mark.gen_test
async def test_full_refund_to_wallet_moves_money_back_from_credited_accounts(
        api, kpay_app, money_plugin):
    token = await api.login("amy")
    await api.topup(token, 1000)
    order = await wallet_order(api, token, "g250")
    assert await balances(kpay_app, *PARTIES) == {
        "wallet:amy": 750, "earnings:seller1": 200, "platform:revenue": 50}
    refund = await kpay_app.money.orders.refund(order["id"], 250, "host_cancelled")
    assert refund["status"] == "succeeded" and refund["to"] == "wallet"
    assert await balances(kpay_app, *PARTIES) == {
        "wallet:amy": 1000, "earnings:seller1": 0, "platform:revenue": 0}
    status, body = await api.get(f"{ORDERS}/{order['id']}", token)
    assert body["order"]["status"] == "refunded" and body["order"]["refunded"] == 250
    assert money_plugin.kind.refunded == [(order["id"], 250)]
    assert money_plugin.refunded == [refund["_id"]]
    status, page = await api.get("/api/v1/wallet/ledger?limit=1", token)
    assert status == 200
    assert page["entries"][0]["amount"] == 250 and page["entries"][0]["memo"].startswith("退款")


@pytest.mark.gen_test
async def test_partial_refunds_then_over_refund_refused(api, kpay_app):
    token = await api.login("amy")
    await api.topup(token, 1000)
    order = await wallet_order(api, token, "g999")
    orders = kpay_app.money.orders
    await orders.refund(order["id"], 333, "partial", key="p1")
    stored = await orders.get(order["id"])
    assert stored["status"] == "fulfilled" and stored["refundable"] == 666
    before = await balances(kpay_app, *PARTIES)
    with pytest.raises(Conflict) as e:
        await orders.refund(order["id"], 667, "too much", key="p2")
    assert e.value.code == "not_refundable" and e.value.details["refundable"] == 666
    assert await balances(kpay_app, *PARTIES) == before
    assert await kpay_app.store["refunds"].count_documents({}) == 1
    await orders.refund(order["id"], 665, "most", key="p3")
    await orders.refund(order["id"], 1, "last fen", key="p4")
    stored = await orders.get(order["id"])
    assert stored["status"] == "refunded" and stored["refunded"] == 999
    # Every account gave back exactly what it got, however the refunds were split.
    assert await balances(kpay_app, *PARTIES) == {
        "wallet:amy": 1000, "earnings:seller1": 0, "platform:revenue": 0}
    with pytest.raises(Conflict):
        await orders.refund(order["id"], 1, "after the end", key="p5")


@pytest.mark.gen_test
async def test_refund_replay_with_same_key_returns_first(api, kpay_app, money_plugin):
    token = await api.login("amy")
    await api.topup(token, 1000)
    order = await wallet_order(api, token)
    orders = kpay_app.money.orders
    first = await orders.refund(order["id"], 40, "sorry", key="r1")
    again = await orders.refund(order["id"], 40, "sorry", key="r1")
    assert again["_id"] == first["_id"] and again["status"] == "succeeded"
    assert (await orders.get(order["id"]))["refunded"] == 40
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 940
    assert money_plugin.refunded == ["r1"]
    with pytest.raises(Conflict) as e:
        await orders.refund(order["id"], 41, "sorry", key="r1")
    assert e.value.code == "idempotency_conflict"


@pytest.mark.gen_test
@pytest.mark.parametrize("amount", [0, -1, 1.5, "10", True])
async def test_bad_refund_amounts(api, kpay_app, amount):
    token = await api.login("amy")
    await api.topup(token, 1000)
    order = await wallet_order(api, token)
    with pytest.raises(BadRequest):
        await kpay_app.money.orders.refund(order["id"], amount, "bad")
    assert await kpay_app.store["refunds"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_pending_and_closed_orders_are_not_refundable(api, kpay_app):
    token = await api.login("amy")
    status, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": "g100"},
                                           "channel": "native"}, token)
    assert status == 201
    orders = kpay_app.money.orders
    with pytest.raises(Conflict):
        await orders.refund(body["order"]["id"], 100, "nope")
    await orders.close(body["order"]["id"], "expired")
    with pytest.raises(Conflict):
        await orders.refund(body["order"]["id"], 100, "nope")


@pytest.mark.gen_test(timeout=120)
async def test_concurrent_refunds_never_exceed_the_amount(api, kpay_app):
    token = await api.login("amy")
    await api.topup(token, 1000)
    order = await wallet_order(api, token, "g250")
    orders = kpay_app.money.orders
    results = await asyncio.gather(*[
        orders.refund(order["id"], 30, "race", key=f"race{i}") for i in range(12)],
        return_exceptions=True)
    done = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(done) == 8 and len(refused) == 4  # 8 * 30 = 240 <= 250 < 9 * 30
    stored = await orders.get(order["id"])
    assert stored["refunded"] == 240 and stored["refundable"] == 10
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 990
    # The same key from many callers at once: one refund.
    same = await asyncio.gather(*[orders.refund(order["id"], 10, "last", key="one")
                                  for _ in range(8)])
    assert {r["_id"] for r in same} == {"one"}
    assert (await orders.get(order["id"]))["status"] == "refunded"
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 1000


@pytest.mark.gen_test
async def test_refund_to_original_goes_through_the_provider(api, kpay_app, money_plugin):
    token = await api.login("amy")
    order = await paid_order(api, token, "g250")
    orders = kpay_app.money.orders
    refund = await orders.refund(order["id"], 100, "partial back", to="original", key="o1")
    assert refund["status"] == "succeeded" and refund["to"] == "native"
    assert money_plugin.provider.refunds == ["o1"]
    # The money leaves through the account it came in by.
    assert await balances(kpay_app, "external:fakepay", "earnings:seller1",
                          "platform:revenue") == {
        "external:fakepay": -150, "earnings:seller1": 120, "platform:revenue": 30}
    await orders.refund(order["id"], 100, "partial back", to="original", key="o1")
    assert money_plugin.provider.refunds == ["o1"]
    # A key WeChat would not accept is hashed into a stable out_refund_no.
    odd = await orders.refund(order["id"], 50, "退款", to="original", key="退款:1")
    assert odd["out_refund_no"].isalnum() and len(odd["out_refund_no"]) <= 32


@pytest.mark.gen_test
async def test_provider_refusing_a_refund_changes_nothing(api, kpay_app, money_plugin):
    token = await api.login("amy")
    order = await paid_order(api, token)
    orders = kpay_app.money.orders
    money_plugin.provider.refuse_refunds = True
    with pytest.raises(PaymentProviderError):
        await orders.refund(order["id"], 100, "x", to="original", key="f1")
    stored = await orders.get(order["id"])
    assert stored["refundable"] == 100 and stored["refunded"] == 0
    assert (await kpay_app.store["refunds"].find_one({"_id": "f1"}))["status"] == "failed"
    assert await kpay_app.store["ledger"].count_documents({"_id": {"$regex": "^refund:"}}) == 0
    money_plugin.provider.refuse_refunds = False
    refund = await orders.refund(order["id"], 100, "x", to="original", key="f2")
    assert refund["status"] == "succeeded"


@pytest.mark.gen_test
async def test_a_topup_cannot_be_refunded_into_the_wallet_it_filled(api, kpay_app):
    token = await api.login("amy")
    topup = await api.topup(token, 500)
    orders = kpay_app.money.orders
    with pytest.raises(BadRequest) as e:
        await orders.refund(topup["id"], 500, "x")
    assert e.value.code == "invalid_refund_target"
    await orders.refund(topup["id"], 200, "back to the card", to="original")
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 300


@pytest.mark.gen_test
async def test_refund_with_unknown_outcome_stays_pending_and_resumes_once(
        api, kpay_app, money_plugin):
    token = await api.login("amy")
    order = await paid_order(api, token)
    orders = kpay_app.money.orders
    money_plugin.provider.lose_next_refund_answer = True
    with pytest.raises(ConnectionError):
        await orders.refund(order["id"], 60, "x", to="original", key="u1")
    stored = await orders.get(order["id"])
    # Still reserved: no other refund can take the same money meanwhile.
    assert stored["refundable"] == 40 and stored["status"] == "fulfilled"
    assert (await kpay_app.store["refunds"].find_one({"_id": "u1"}))["status"] == "pending"
    with pytest.raises(Conflict):
        await orders.refund(order["id"], 41, "y", to="original", key="u2")
    refund = await orders.refund(order["id"], 60, "x", to="original", key="u1")
    assert refund["status"] == "succeeded"
    assert money_plugin.provider.refunds == ["u1", "u1"]  # the same out_refund_no again
    assert await kpay_app.money.ledger.balance("external:fakepay") == -40
    assert money_plugin.refunded == ["u1"]


@pytest.mark.gen_test(timeout=60)
async def test_same_refund_key_racing_to_the_provider_books_once(api, kpay_app, money_plugin):
    token = await api.login("amy")
    order = await paid_order(api, token, "g250")
    orders = kpay_app.money.orders
    results = await asyncio.gather(*[
        orders.refund(order["id"], 250, "all", to="original", key="all1") for _ in range(6)])
    assert {r["_id"] for r in results} == {"all1"}
    assert set(money_plugin.provider.refunds) == {"all1"}
    assert money_plugin.refunded == ["all1"]
    assert (await orders.get(order["id"]))["status"] == "refunded"
    assert await kpay_app.store["ledger"].count_documents({"_id": "refund:all1"}) == 1
    assert await kpay_app.money.ledger.balance("external:fakepay") == 0
