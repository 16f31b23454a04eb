"""WeChat Pay API v3 end to end against the local fake v3 server: Native, H5 and
JSAPI orders paid through signed callbacks, refunds (a lost answer, the refund
callback), query and close through money.settle_pending, request signatures."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from wechat_helpers import create_order, ledger_count, notifies
from wechat_v3_helpers import V3_REFUND_NOTIFY, paid_v3_order, post_callback

from kpay.testing import assert_books_balanced, wait_until
from plugins.wechat_pay import runtime_of, v3_signing


@pytest.fixture
def kpay_overrides(fake_wechat_v3, tmp_path):
    return {"wechat_pay": fake_wechat_v3.settings(tmp_path / "keys")}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("channel", ["native", "mweb", "jsapi"])
async def test_an_order_is_created_paid_and_booked_once(api, kpay_app, fake_wechat_v3,
                                                        channel):
    token, order = await paid_v3_order(api, fake_wechat_v3, channel, 700)
    fake_order = fake_wechat_v3.orders[order["out_trade_no"]]
    assert fake_order.trade_type == {"native": "NATIVE", "mweb": "MWEB",
                                     "jsapi": "JSAPI"}[channel]
    stored = await kpay_app.money.orders.get(order["id"])
    assert stored["provider"] == "wechat_pay_v3" and stored["status"] == "fulfilled"
    pay = stored["pay"]
    if channel == "native":
        assert pay["code_url"].startswith("weixin://wxpay/")
    elif channel == "mweb":
        assert "prepay_id=" in pay["mweb_url"]
    else:
        assert fake_order.openid == "o-rita" and pay["signType"] == "RSA"
        message = v3_signing.jsapi_message(pay["appId"], pay["timeStamp"], pay["nonceStr"],
                                           pay["package"])
        assert v3_signing.rsa_verify(fake_wechat_v3.merchant_key.public_key(), message,
                                     pay["paySign"])
    assert await kpay_app.money.ledger.balance("external:wechat_pay_v3") == -700
    _, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 700
    assert await ledger_count(kpay_app, order["id"]) == 1
    [record] = await notifies(kpay_app, out_trade_no=order["out_trade_no"])
    assert record["verdict"] == "paid" and record["verified"] is True
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_a_request_with_a_bad_signature_is_refused_with_401(api, kpay_app,
                                                                   fake_wechat_v3):
    v3 = runtime_of(kpay_app).v3
    good = v3.merchant
    v3.merchant = replace(good, private_key=rsa.generate_private_key(65537, 2048))
    try:
        token = await api.login("rita")
        status, body = await api.post("/api/v1/orders", {
            "item": {"kind": "wallet_topup", "amount": 500}, "channel": "native"}, token)
    finally:
        v3.merchant = good
    assert status == 502 and body["error"]["code"] == "payment_provider_error", body
    assert "SIGN_ERROR" in body["error"]["message"]
    assert fake_wechat_v3.orders == {}


@pytest.mark.gen_test(timeout=30)
async def test_refund_survives_a_lost_answer_and_its_callback_is_recorded(
        api, kpay_app, fake_wechat_v3):
    _, order = await paid_v3_order(api, fake_wechat_v3, "native", 500)
    fake_wechat_v3.lose_refund_answers = 1  # WeChat refunds, but its answer is lost
    orders = kpay_app.money.orders
    refund = await orders.refund(order["id"], 200, "changed_mind", to="original")
    assert refund["status"] == "succeeded" and refund["to"] == "native"
    assert fake_wechat_v3.calls["refunds"] == 2  # retried ...
    assert list(fake_wechat_v3.refunds) == [refund["out_refund_no"]]  # ... refunded once
    assert fake_wechat_v3.orders[order["out_trade_no"]].refunded == 200
    again = await orders.refund(order["id"], 200, "changed_mind", to="original")
    assert again["_id"] == refund["_id"] and fake_wechat_v3.calls["refunds"] == 2
    # WeChat's refund callback (with retries) is verified and recorded on the refund.
    notify_url = fake_wechat_v3.refunds[refund["out_refund_no"]]["notify_url"]
    assert notify_url.endswith(V3_REFUND_NOTIFY)
    delivery = fake_wechat_v3.send(notify_url,
                                   fake_wechat_v3.refund_notify(refund["out_refund_no"]))
    await delivery.done.wait()
    assert delivery.succeeded
    stored = await kpay_app.money.orders.refunds.find_one({"_id": refund["_id"]})
    assert stored["provider_status"] == "SUCCESS"
    assert await kpay_app.money.ledger.balance("external:wechat_pay_v3") == -300
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_a_refund_callback_that_failed_goes_on_the_attention_list(
        api, kpay_app, fake_wechat_v3):
    _, order = await paid_v3_order(api, fake_wechat_v3, "native", 500)
    refund = await kpay_app.money.orders.refund(order["id"], 500, "x", to="original")
    body = fake_wechat_v3.refund_notify(refund["out_refund_no"], status="ABNORMAL")
    status, answer = await post_callback(api, V3_REFUND_NOTIFY, body,
                                         fake_wechat_v3.signed_headers(body))
    assert status == 200 and answer == {"code": "SUCCESS"}
    stored = await kpay_app.money.orders.refunds.find_one({"_id": refund["_id"]})
    assert stored["provider_status"] == "ABNORMAL"
    assert await kpay_app.store["attention"].count_documents({}) >= 1
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_settle_pending_queries_and_closes_through_v3(api, kpay_app, fake_wechat_v3):
    token = await api.login("rita")
    paid = (await create_order(api, token, "native", 300))["order"]
    left = (await create_order(api, token, "native", 400))["order"]
    # The payer pays, but the callback never arrives: the query books it.
    fake_paid = fake_wechat_v3.orders[paid["out_trade_no"]]
    fake_paid.trade_state, fake_paid.transaction_id = "SUCCESS", "4200query"
    kpay_app.clock.advance(6 * 60)
    assert await kpay_app.money.settle_pending() == 1
    assert (await kpay_app.money.orders.get(paid["id"]))["status"] == "fulfilled"
    assert (await kpay_app.money.orders.get(left["id"]))["status"] == "pending"
    assert fake_wechat_v3.calls["transactions/query"] == 2
    # Past its expiry the unpaid one is closed at WeChat, then in kpay.
    kpay_app.clock.advance(kpay_app.settings.money.order_expiry_seconds)
    assert await kpay_app.money.settle_pending() == 1
    assert (await kpay_app.money.orders.get(left["id"]))["status"] == "closed"
    assert fake_wechat_v3.orders[left["out_trade_no"]].trade_state == "CLOSED"
    assert fake_wechat_v3.calls["transactions/close"] == 1
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_a_refused_callback_is_resent_until_answered_success(api, kpay_app,
                                                                   fake_wechat_v3):
    token = await api.login("rita")
    order = (await create_order(api, token, "native", 400))["order"]
    # Signed with the 平台证书 kpay was not given: refused (unknown serial), and resent.
    fake_wechat_v3.mode, fake_wechat_v3.retry_scale = "certificate", 0.05
    delivery = fake_wechat_v3.pay(order["out_trade_no"])
    await wait_until(lambda: delivery.attempts)
    fake_wechat_v3.mode = "public_key"  # WeChat's next attempt is signed so kpay believes it
    await delivery.done.wait()
    assert delivery.succeeded and [code for code, _ in delivery.attempts] == [400, 200]
    assert json.loads(delivery.attempts[0][1])["code"] == "FAIL"
    assert await ledger_count(kpay_app, order["id"]) == 1
    await assert_books_balanced(kpay_app)
