"""A full flow per channel against the local fake WeChat Pay."""

from __future__ import annotations

import asyncio

import pytest
from wechat_helpers import NOTIFY, create_order, ledger_count, post_xml

from plugins.wechat_pay import signing


@pytest.mark.gen_test
async def test_native_flow_pays_through_the_notify(api, kpay_app, fake_wechat):
    token = await api.login("alice")
    created = await create_order(api, token, "native", 1200)
    order = created["order"]
    assert created["pay"]["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert fake_wechat.orders[order["out_trade_no"]].total_fee == 1200
    delivery = fake_wechat.pay(order["out_trade_no"])
    await delivery.done.wait()
    assert delivery.succeeded and len(delivery.attempts) == 1
    assert delivery.attempts[0][1] == signing.SUCCESS_XML
    _, body = await api.get(f"/api/v1/orders/{order['id']}", token)
    assert body["order"]["status"] == "fulfilled"
    _, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 1200
    assert await kpay_app.money.ledger.balance("external:wechat_pay") == -1200


@pytest.mark.gen_test
async def test_jsapi_needs_an_openid(api, kpay_app, fake_wechat):
    token = await api.login("carol")
    status, body = await api.post("/api/v1/orders", {
        "item": {"kind": "wallet_topup", "amount": 300}, "channel": "jsapi"}, token)
    assert status == 400 and body["error"]["code"] == "openid_required"
    assert body["error"]["field"] == "openid"
    assert fake_wechat.calls["pay/unifiedorder"] == 0
    # The refused order does not linger as pending until it expires.
    statuses = [o["status"] async for o in kpay_app.store["orders"].find({"user_id": "carol"})]
    assert statuses == ["closed"]


@pytest.mark.gen_test
async def test_jsapi_flow_gives_bridge_params_with_a_correct_pay_sign(api, kpay_app,
                                                                      fake_wechat):
    token = await api.login("carol")
    created = await create_order(api, token, "jsapi", 300, openid="o-carol")
    pay = created["pay"]
    assert set(pay) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    fake_order = fake_wechat.orders[created["order"]["out_trade_no"]]
    assert pay["appId"] == fake_wechat.appid and pay["signType"] == "MD5"
    assert pay["package"] == f"prepay_id={fake_order.prepay_id}"
    assert fake_order.openid == "o-carol" and fake_order.trade_type == "JSAPI"
    # What WeixinJSBridge checks: paySign over the other five, with the merchant key.
    unsigned = {k: v for k, v in pay.items() if k != "paySign"}
    assert pay["paySign"] == signing.sign(unsigned, fake_wechat.api_key, "MD5")
    delivery = fake_wechat.pay(created["order"]["out_trade_no"])
    await delivery.done.wait()
    _, wallet = await api.get("/api/v1/wallet", token)
    assert delivery.succeeded and wallet["balance"] == 300


@pytest.mark.gen_test
async def test_jsapi_takes_the_openid_from_the_user_record(api, kpay_app, fake_wechat):
    token = await api.login("dave")
    await kpay_app.store["users"].update_one({"_id": "dave"}, {"$set": {"openid": "o-dave"}})
    created = await create_order(api, token, "jsapi", 100)
    assert fake_wechat.orders[created["order"]["out_trade_no"]].openid == "o-dave"


@pytest.mark.gen_test
async def test_mweb_flow_gives_the_mweb_url(api, kpay_app, fake_wechat):
    token = await api.login("erin")
    created = await create_order(api, token, "mweb", 700)
    assert created["pay"]["mweb_url"].startswith(fake_wechat.base_url + "_fake/mweb?prepay_id=")
    assert fake_wechat.orders[created["order"]["out_trade_no"]].trade_type == "MWEB"
    delivery = fake_wechat.pay(created["order"]["out_trade_no"])
    await delivery.done.wait()
    _, got = await api.get(f"/api/v1/orders/{created['order']['id']}", token)
    assert got["order"]["status"] == "fulfilled"


@pytest.mark.gen_test
async def test_wechat_refusing_unifiedorder_closes_the_order(api, kpay_app, fake_wechat):
    token = await api.login("frank")
    fake_wechat.api_key = "another-key-" + "0" * 20  # our requests now fail its signature check
    status, body = await api.post("/api/v1/orders", {
        "item": {"kind": "wallet_topup", "amount": 300}, "channel": "native"}, token)
    assert status == 502 and body["error"]["code"] == "payment_provider_error"
    [order] = [o async for o in kpay_app.store["orders"].find({"user_id": "frank"})]
    assert order["status"] == "closed"


@pytest.mark.gen_test
async def test_notify_racing_the_reconciliation_job_pays_once(api, kpay_app, fake_wechat):
    token = await api.login("gina")
    created = await create_order(api, token, "native", 450)
    order = created["order"]
    delivery = fake_wechat.pay(order["out_trade_no"])
    # The job sees it paid (orderquery) while the notify is arriving.
    await asyncio.gather(kpay_app.advance_clock(6 * 60), delivery.done.wait())
    assert delivery.succeeded
    assert await ledger_count(kpay_app, order["id"]) == 1
    _, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 450
    stored = await kpay_app.store["orders"].find_one({"_id": order["id"]})
    assert stored["status"] == "fulfilled" and stored["paid_via"] in ("query", "notify")
    assert stored["transaction_id"] == fake_wechat.orders[order["out_trade_no"]].transaction_id
    assert fake_wechat.calls["pay/orderquery"] == 1


@pytest.mark.gen_test
async def test_reconciliation_books_a_payment_whose_notify_never_came(api, kpay_app,
                                                                      fake_wechat):
    token = await api.login("hank")
    order = (await create_order(api, token, "native", 650))["order"]
    fake_order = fake_wechat.orders[order["out_trade_no"]]
    fake_order.trade_state, fake_order.transaction_id = "SUCCESS", "4200lost"
    await kpay_app.advance_clock(60)
    assert fake_wechat.calls["pay/orderquery"] == 0  # younger than 5 minutes: left alone
    await kpay_app.advance_clock(5 * 60)
    stored = await kpay_app.store["orders"].find_one({"_id": order["id"]})
    assert stored["status"] == "fulfilled" and stored["paid_via"] == "query"
    assert stored["transaction_id"] == "4200lost"


@pytest.mark.gen_test
async def test_reconciliation_closes_expired_orders_at_wechat(api, kpay_app, fake_wechat):
    token = await api.login("ivan")
    order = (await create_order(api, token, "native", 650))["order"]
    await kpay_app.advance_clock(kpay_app.settings.money.order_expiry_seconds + 60)
    assert fake_wechat.orders[order["out_trade_no"]].trade_state == "CLOSED"
    _, got = await api.get(f"/api/v1/orders/{order['id']}", token)
    assert got["order"]["status"] == "closed"
    # A late notify for it is flagged, not booked.
    _, answer = await post_xml(api, NOTIFY, fake_wechat.payment_notify(
        order["out_trade_no"]))
    assert answer["return_code"] == "SUCCESS"
    assert await ledger_count(kpay_app, order["id"]) == 0
