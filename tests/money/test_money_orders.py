"""Orders over HTTP: server prices, bad input, wallet payment races, the provider path,
mark_paid exactly once."""

import asyncio

import pytest
from money_fakes import ORDERS, pending_order

from kpay.core.errors import Conflict


def gadget(sku="g100", **extra):
    return {"kind": "test_gadget", "sku": sku, **extra}


async def counts(app):
    store = app.store
    return {name: await store[name].count_documents({})
            for name in ("orders", "ledger", "accounts", "test_claims")}


@pytest.mark.gen_test(timeout=120)
async def test_twenty_wallet_orders_racing_one_balance(api, kpay_app, money_plugin):
    token = await api.login("amy")
    await api.topup(token, 1000)
    results = await asyncio.gather(*[
        api.post(ORDERS, {"item": gadget(), "channel": "wallet"}, token) for _ in range(20)])
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 10 + [402] * 10
    for status, body in results:
        if status == 402:
            assert body["error"]["code"] == "insufficient_balance"
            assert body["error"]["needed"] == 100
        else:
            assert body["order"]["status"] == "fulfilled" and body["pay"] == {}
    status, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 0 and wallet["held"] == 0
    # Refused orders left nothing behind: no order, no ledger entry.
    assert await kpay_app.store["orders"].count_documents({"kind": "test_gadget"}) == 10
    # The top-up and the ten paid orders.
    assert await kpay_app.store["ledger"].count_documents(
        {"_id": {"$regex": "^order:"}, "postings.account": "wallet:amy"}) == 11
    assert len(money_plugin.kind.fulfils) == 10
    assert len(money_plugin.paid) == 11  # on_order_paid for the top-up too
    assert await kpay_app.money.ledger.balance("earnings:seller1") == 800
    assert await kpay_app.money.ledger.balance("platform:revenue") == 200


@pytest.mark.gen_test
async def test_wallet_that_cannot_pay_writes_nothing(api, kpay_app):
    token = await api.login("amy")
    await api.topup(token, 50)
    before = await counts(kpay_app)
    status, body = await api.post(ORDERS, {"item": gadget(one_per_user=True),
                                           "channel": "wallet"}, token)
    assert status == 402
    assert body["error"] == {"code": "insufficient_balance", "needed": 100, "balance": 50,
                             "message": body["error"]["message"]}
    # The claim kind.reserve made inside the transaction was rolled back too.
    assert await counts(kpay_app) == before
    await api.topup(token, 50)
    status, body = await api.post(ORDERS, {"item": gadget(one_per_user=True),
                                           "channel": "wallet"}, token)
    assert status == 201 and body["order"]["status"] == "fulfilled"


@pytest.mark.gen_test
async def test_reserve_conflict_refuses_and_charges_nothing(api, kpay_app):
    token = await api.login("amy")
    await api.topup(token, 1000)
    status, _ = await api.post(ORDERS, {"item": gadget(one_per_user=True),
                                        "channel": "wallet"}, token)
    assert status == 201
    before = await counts(kpay_app)
    status, body = await api.post(ORDERS, {"item": gadget(one_per_user=True),
                                           "channel": "wallet"}, token)
    assert status == 409 and body["error"]["code"] == "already_owned"
    assert await counts(kpay_app) == before
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 900


@pytest.mark.gen_test
async def test_client_sent_price_is_ignored(api, kpay_app):
    token = await api.login("amy")
    await api.topup(token, 1000)
    item = gadget("g250", amount=1, price=1, credits=[["wallet:amy", 1]])
    # A field the order request does not know is refused, not silently dropped.
    status, body = await api.post(ORDERS, {"item": item, "channel": "wallet",
                                           "amount": 1, "price": 1}, token)
    assert status == 400 and body["error"]["field"] in ("amount", "price")
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 1000
    status, body = await api.post(ORDERS, {"item": item, "channel": "wallet"}, token)
    assert status == 201
    order = body["order"]
    assert order["amount"] == 250 and "price" not in order["item"]
    assert "amount" not in order["item"]
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 750
    # Through a provider too: the payment asked for is the server's price.
    status, body = await api.post(ORDERS, {"item": item, "channel": "native"}, token)
    assert status == 201 and body["order"]["amount"] == 250
    assert body["pay"] == {"code_url": f"weixin://wxpay/bizpayurl?pr={body['order']['id']}"}


@pytest.mark.gen_test
@pytest.mark.parametrize("amount", [0, -100, 1.5, "100", True, None, 100_001, 10**30])
async def test_bad_topup_amounts_refused(api, kpay_app, amount):
    token = await api.login("amy")
    item = {"kind": "wallet_topup"} if amount is None else {"kind": "wallet_topup",
                                                           "amount": amount}
    status, body = await api.post(ORDERS, {"item": item, "channel": "native"}, token)
    assert status == 400, body
    assert body["error"]["code"] in ("invalid_amount", "invalid_field")
    assert body["error"]["field"] == "item.amount"
    assert await kpay_app.store["orders"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_topup_through_provider_and_limits(api, kpay_app):
    token = await api.login("amy")
    status, body = await api.post(ORDERS, {"item": {"kind": "wallet_topup", "amount": 100_000},
                                           "channel": "native"}, token)
    assert status == 201 and body["order"]["status"] == "pending"
    order_id = body["order"]["id"]
    status, paid = await api.post(f"/api/v1/dev/orders/{order_id}/pay", token=token)
    assert status == 200 and paid["order"]["status"] == "fulfilled"
    status, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 100_000
    # A top-up cannot be paid from the wallet it fills.
    status, body = await api.post(ORDERS, {"item": {"kind": "wallet_topup", "amount": 100},
                                           "channel": "wallet"}, token)
    assert status == 400 and body["error"]["code"] == "channel_not_allowed"
    entry = await kpay_app.store["ledger"].find_one({"_id": f"order:{order_id}:pay"})
    assert sorted((p["account"], p["amount"]) for p in entry["postings"]) == [
        ("external:fakepay", -100_000), ("wallet:amy", 100_000)]


@pytest.mark.gen_test
@pytest.mark.parametrize("body, status, code", [
    ({"item": {"kind": "nope"}, "channel": "wallet"}, 400, "unknown_kind"),
    ({"item": {"kind": 5}, "channel": "wallet"}, 400, "unknown_kind"),
    ({"item": {}, "channel": "wallet"}, 400, "unknown_kind"),
    ({"item": "g100", "channel": "wallet"}, 400, "invalid_field"),
    ({"item": {"kind": "test_gadget", "sku": "g100"}, "channel": "bitcoin"}, 400,
     "unknown_channel"),
    ({"item": {"kind": "test_gadget", "sku": "g100"}}, 400, "invalid_field"),
    ({"item": {"kind": "test_gadget"}, "channel": "wallet"}, 400, "invalid_field"),
    ({"item": {"kind": "test_gadget", "sku": "zzz"}, "channel": "wallet"}, 404,
     "gadget_not_found"),
    ({"item": {"kind": "test_gadget", "sku": "sold_out"}, "channel": "wallet"}, 409,
     "sold_out"),
])
async def test_bad_orders_refused_with_clear_errors(api, kpay_app, body, status, code):
    token = await api.login("amy")
    await api.topup(token, 1000)
    before = await counts(kpay_app)
    got, reply = await api.post(ORDERS, body, token)
    assert (got, reply["error"]["code"]) == (status, code), reply
    assert reply["error"]["message"]
    assert await counts(kpay_app) == before


@pytest.mark.gen_test
async def test_orders_need_a_token_and_others_orders_are_404(api, kpay_app):
    amy = await api.login("amy")
    bob = await api.login("bob")
    admin = await api.login("root", "admin")
    status, body = await api.post(ORDERS, {"item": gadget(), "channel": "native"}, amy)
    order_id = body["order"]["id"]
    status, _ = await api.post(ORDERS, {"item": gadget(), "channel": "native"})
    assert status == 401
    status, body = await api.get(f"{ORDERS}/{order_id}", bob)
    assert status == 404 and body["error"]["code"] == "order_not_found"
    status, body = await api.post(f"/api/v1/dev/orders/{order_id}/pay", token=bob)
    assert status == 404
    status, body = await api.get(f"{ORDERS}/{order_id}", amy)
    assert status == 200 and body["order"]["status"] == "pending"
    status, body = await api.get(f"{ORDERS}/{order_id}", admin)
    assert status == 200
    status, body = await api.get(f"{ORDERS}/o-missing", amy)
    assert status == 404
    status, listed = await api.get(ORDERS, bob)
    assert listed["orders"] == []


@pytest.mark.gen_test
async def test_free_item_is_paid_at_once_without_money(api, kpay_app, money_plugin):
    token = await api.login("amy")  # an empty wallet
    for channel in ("wallet", "native"):
        status, body = await api.post(ORDERS, {"item": gadget("free"), "channel": channel},
                                      token)
        assert status == 201, body
        assert body["order"]["status"] == "fulfilled" and body["order"]["amount"] == 0
        assert body["pay"] == {}
    assert await kpay_app.store["ledger"].count_documents({}) == 0
    assert len(money_plugin.kind.fulfils) == 2
    assert money_plugin.provider.queried == []


@pytest.mark.gen_test
async def test_provider_refusing_to_start_closes_the_order(api, kpay_app, money_plugin):
    token = await api.login("amy")
    money_plugin.provider.refuse_start = True
    status, body = await api.post(ORDERS, {"item": gadget(), "channel": "native"}, token)
    assert status == 502 and body["error"]["code"] == "payment_provider_error"
    order = await kpay_app.store["orders"].find_one({})
    assert order["status"] == "closed" and order["close_reason"] == "payment_not_started"
    assert money_plugin.kind.released == [order["_id"]]


@pytest.mark.gen_test(timeout=120)
async def test_mark_paid_fifty_times_at_once_books_and_fulfils_once(api, kpay_app,
                                                                    money_plugin):
    token = await api.login("amy")
    order = await pending_order(api, token)
    orders = kpay_app.money.orders
    results = await asyncio.gather(*[
        orders.mark_paid(order["id"], 100, source="external:fakepay",
                         transaction_id="wx1", via="notify") for _ in range(50)])
    # Callers that lost the race see the order paid (or already fulfilled).
    assert {r["status"] for r in results} <= {"paid", "fulfilled"}
    assert (await orders.get(order["id"]))["status"] == "fulfilled"
    assert money_plugin.kind.fulfils == {order["id"]: 1}
    assert money_plugin.paid == [order["id"]]
    assert await kpay_app.store["ledger"].count_documents(
        {"_id": f"order:{order['id']}:pay"}) == 1
    assert await kpay_app.money.ledger.balance("external:fakepay") == -100
    # The dev simulator afterwards goes the same way: nothing more happens.
    status, body = await api.post(f"/api/v1/dev/orders/{order['id']}/pay", token=token)
    assert status == 200 and body["order"]["status"] == "fulfilled"
    assert money_plugin.kind.fulfils == {order["id"]: 1}


@pytest.mark.gen_test
async def test_mark_paid_with_wrong_amount_books_nothing(api, kpay_app, money_plugin):
    token = await api.login("amy")
    order = await pending_order(api, token)
    orders = kpay_app.money.orders
    for wrong in (99, 101, 0, "100", True, 100.0):
        with pytest.raises(Conflict) as e:
            await orders.mark_paid(order["id"], wrong, source="external:fakepay")
        assert e.value.code == "amount_mismatch"
    stored = await orders.get(order["id"])
    assert stored["status"] == "pending"
    assert await kpay_app.store["ledger"].count_documents({}) == 0
    assert money_plugin.kind.fulfils == {}


@pytest.mark.gen_test
async def test_mark_paid_on_closed_order_is_order_closed(api, kpay_app, money_plugin):
    token = await api.login("amy")
    order = await pending_order(api, token)
    orders = kpay_app.money.orders
    await orders.close(order["id"], "expired")
    await orders.close(order["id"], "expired")  # idempotent
    assert money_plugin.kind.released == [order["id"]]
    with pytest.raises(Conflict) as e:
        await orders.mark_paid(order["id"], 100, source="external:fakepay")
    assert e.value.code == "order_closed"
    status, body = await api.post(f"/api/v1/dev/orders/{order['id']}/pay", token=token)
    assert status == 409 and body["error"]["code"] == "order_closed"
    assert await kpay_app.store["ledger"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_dev_pay_uses_mark_paid_and_records_the_source(api, kpay_app, money_plugin):
    token = await api.login("amy")
    order = await pending_order(api, token, "g250")
    status, body = await api.post(f"/api/v1/dev/orders/{order['id']}/pay", token=token)
    assert status == 200 and body["order"]["status"] == "fulfilled"
    stored = await kpay_app.money.orders.get(order["id"])
    assert stored["paid_from"] == "external:fakepay" and stored["paid_via"] == "dev"
    assert await kpay_app.money.ledger.balance("earnings:seller1") == 200


@pytest.mark.gen_test
async def test_payment_state_from_a_notify_is_booked_once(api, kpay_app, money_plugin):
    from kpay.core.money.providers import PaymentState

    token = await api.login("amy")
    order = await pending_order(api, token)
    orders = kpay_app.money.orders
    state = PaymentState("paid", 100, "wx9", out_trade_no=order["out_trade_no"])
    first = await orders.apply_payment_state(money_plugin.provider, state)
    again = await orders.apply_payment_state(money_plugin.provider, state)
    assert first["status"] == again["status"] == "fulfilled"
    assert money_plugin.kind.fulfils == {order["id"]: 1}
    missing = PaymentState("paid", 100, "wx9", out_trade_no="nope")
    assert await orders.apply_payment_state(money_plugin.provider, missing) is None


async def keyed(api, token, key, item=None, channel="wallet"):
    return await api.request("POST", ORDERS, {"item": item or gadget(), "channel": channel},
                             token=token, headers={"Idempotency-Key": key})


@pytest.mark.gen_test(timeout=60)
async def test_retried_order_request_with_idempotency_key_buys_once(api, kpay_app,
                                                                     money_plugin):
    token = await api.login("amy")
    await api.topup(token, 1000)
    results = await asyncio.gather(*[keyed(api, token, "buy-1") for _ in range(10)])
    assert {status for status, _ in results} == {201}
    assert len({body["order"]["id"] for _, body in results}) == 1
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 900
    assert len(money_plugin.kind.fulfils) == 1
    status, again = await keyed(api, token, "buy-1")
    assert status == 201 and again["order"]["id"] == results[0][1]["order"]["id"]
    # Another item under the same key is refused; other keys and users are separate.
    status, body = await keyed(api, token, "buy-1", gadget("g250"))
    assert status == 409 and body["error"]["code"] == "idempotency_conflict"
    status, other = await keyed(api, token, "buy-2")
    assert status == 201 and other["order"]["id"] != again["order"]["id"]
    bob = await api.login("bob")
    await api.topup(bob, 100)
    status, bobs = await keyed(api, bob, "buy-1")
    assert status == 201 and bobs["order"]["id"] != again["order"]["id"]
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 800


@pytest.mark.gen_test
async def test_idempotency_key_replays_the_payment_to_start_and_refusals(api, kpay_app):
    token = await api.login("amy")
    status, first = await keyed(api, token, "k-native", channel="native")
    status2, again = await keyed(api, token, "k-native", channel="native")
    assert status == status2 == 201
    assert again["order"]["id"] == first["order"]["id"] and again["pay"] == first["pay"]
    assert await kpay_app.store["orders"].count_documents({}) == 1
    # A refused wallet order wrote nothing, so the same key may try again later.
    status, body = await keyed(api, token, "k-wallet")
    assert status == 402
    await api.topup(token, 100)
    status, body = await keyed(api, token, "k-wallet")
    assert status == 201 and body["order"]["status"] == "fulfilled"
    for bad in ("x" * 65, "with space", "é"):
        status, body = await api.request(
            "POST", ORDERS, {"item": gadget(), "channel": "wallet"}, token=token,
            headers={"Idempotency-Key": bad.encode().decode("latin-1")})
        assert status == 400 and body["error"]["field"] == "Idempotency-Key", bad
