"""Refunds to the original channel with the merchant certificate, against the fake
running TLS that checks the client certificate; refund notifies (encrypted req_info)."""

from __future__ import annotations

import pytest
from wechat_certs import make_certificates, server_context
from wechat_helpers import REFUND_NOTIFY, create_order, notifies, post_xml

from plugins.wechat_pay import runtime_of, signing
from plugins.wechat_pay.fake import FakeWeChat
from plugins.wechat_pay.provider import RefundOutcomeUnknown


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("wechat-certs"))


@pytest.fixture
def fake_wechat(io_loop, certificates):
    fake = FakeWeChat(retry_scale=0.001, ssl_context=server_context(certificates))
    io_loop.run_sync(fake.start)
    yield fake
    io_loop.run_sync(fake.stop)


@pytest.fixture
def kpay_overrides(fake_wechat, certificates):
    return {"wechat_pay": {**fake_wechat.settings(), "ca_bundle": certificates["ca"],
                           "mch_cert": certificates["merchant_cert"],
                           "mch_key": certificates["merchant_key"]}}


async def paid_order(api, fake_wechat, amount=500):
    token = await api.login("rita")
    order = (await create_order(api, token, "native", amount))["order"]
    delivery = fake_wechat.pay(order["out_trade_no"])
    await delivery.done.wait()
    assert delivery.succeeded
    return token, order


@pytest.mark.gen_test(timeout=30)
async def test_refund_to_the_original_channel_survives_a_lost_answer(api, kpay_app,
                                                                     fake_wechat):
    token, order = await paid_order(api, fake_wechat)
    fake_wechat.lose_refund_answers = 1  # WeChat refunds, but its answer is lost
    orders = kpay_app.money.orders
    refund = await orders.refund(order["id"], 500, "changed_mind", to="original")
    assert refund["status"] == "succeeded" and refund["to"] == "native"
    assert fake_wechat.calls["secapi/pay/refund"] == 2  # retried ...
    assert list(fake_wechat.refunds) == [refund["out_refund_no"]]  # ... refunded once
    assert fake_wechat.orders[order["out_trade_no"]].refunded == 500
    # Asking again (same key) neither calls WeChat nor books anything.
    again = await orders.refund(order["id"], 500, "changed_mind", to="original")
    assert again["_id"] == refund["_id"] and fake_wechat.calls["secapi/pay/refund"] == 2
    assert await kpay_app.money.ledger.balance("external:wechat_pay") == 0
    _, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 0
    _, got = await api.get(f"/api/v1/orders/{order['id']}", token)
    assert got["order"]["status"] == "refunded"
    # WeChat's refund notify (encrypted req_info) arrives and is recorded.
    refund_delivery = fake_wechat.deliveries[-1]
    await refund_delivery.done.wait()
    assert refund_delivery.succeeded
    [record] = await notifies(kpay_app, kind="refund")
    assert record["verdict"] == "refund_success"
    assert record["out_refund_no"] == refund["out_refund_no"]
    stored = await kpay_app.store["refunds"].find_one({"_id": refund["_id"]})
    assert stored["provider_status"] == "SUCCESS"


@pytest.mark.gen_test(timeout=30)
async def test_refund_without_the_client_certificate_is_refused(api, kpay_app, fake_wechat):
    _, order = await paid_order(api, fake_wechat)
    runtime_of(kpay_app).pay.cert_pair = None  # as if the certificate were not configured
    with pytest.raises(Exception) as refused:
        await kpay_app.money.orders.refund(order["id"], 500, "no_cert", to="original")
    assert getattr(refused.value, "code", "") == "payment_provider_error"
    assert "证书" in str(refused.value)  # the fake refused: no client certificate
    assert fake_wechat.refunds == {}
    stored = await kpay_app.store["orders"].find_one({"_id": order["id"]})
    assert stored["status"] == "fulfilled" and stored["refundable"] == 500
    assert await kpay_app.money.ledger.balance("external:wechat_pay") == -500


@pytest.mark.gen_test(timeout=30)
async def test_forged_refund_notifies_are_refused(api, kpay_app, fake_wechat):
    _, order = await paid_order(api, fake_wechat)
    refund = await kpay_app.money.orders.refund(order["id"], 200, "part", to="original")
    await fake_wechat.deliveries[-1].done.wait()
    genuine = signing.parse_xml(fake_wechat.refund_notify(refund["out_refund_no"]))
    info = signing.decrypt_req_info(genuine["req_info"], fake_wechat.api_key)
    bad_key = {**genuine, "req_info": signing.encrypt_req_info(info, "x" * 32)}
    other_refund = {**genuine, "req_info": signing.encrypt_req_info(
        {**info, "out_refund_no": "rf-nobody"}, fake_wechat.api_key)}
    more_money = {**genuine, "req_info": signing.encrypt_req_info(
        {**info, "refund_fee": "500"}, fake_wechat.api_key)}
    for body, verdict in [
        (signing.to_xml(bad_key), "bad_req_info"),
        (signing.to_xml({**genuine, "req_info": "not base64!"}), "bad_req_info"),
        (signing.to_xml(other_refund), "unknown_refund"),
        (signing.to_xml(more_money), "amount_mismatch"),
        (signing.to_xml({**genuine, "mch_id": "1"}), "wrong_mch_id"),
        ("<!DOCTYPE x [<!ENTITY a 'b'>]><xml>&a;</xml>", "bad_xml"),
    ]:
        status, answer = await post_xml(api, REFUND_NOTIFY, body)
        assert status == 400 and answer["return_code"] == "FAIL", verdict
        assert (await notifies(kpay_app, kind="refund"))[-1]["verdict"] == verdict
    stored = await kpay_app.store["refunds"].find_one({"_id": refund["_id"]})
    assert stored["amount"] == 200 and stored["status"] == "succeeded"


@pytest.mark.gen_test(timeout=30)
async def test_refund_with_every_answer_lost_stays_pending_and_resumes_once(api, kpay_app,
                                                                            fake_wechat):
    token, order = await paid_order(api, fake_wechat)
    fake_wechat.lose_refund_answers = 3  # every attempt of the first call
    orders = kpay_app.money.orders
    with pytest.raises(RefundOutcomeUnknown):
        await orders.refund(order["id"], 500, "lost", to="original")
    [pending] = [r async for r in kpay_app.store["refunds"].find({"order_id": order["id"]})]
    assert pending["status"] == "pending"
    assert fake_wechat.calls["secapi/pay/refund"] == 3 and len(fake_wechat.refunds) == 1
    assert await kpay_app.money.ledger.balance("external:wechat_pay") == -500  # not booked
    # Retrying with the same key sends the same out_refund_no: WeChat pays nothing more.
    done = await orders.refund(order["id"], 500, "lost", to="original")
    assert done["status"] == "succeeded" and done["out_refund_no"] == pending["out_refund_no"]
    assert fake_wechat.calls["secapi/pay/refund"] == 4
    assert list(fake_wechat.refunds) == [pending["out_refund_no"]]
    assert fake_wechat.orders[order["out_trade_no"]].refunded == 500
    assert await kpay_app.money.ledger.balance("external:wechat_pay") == 0
    _, got = await api.get(f"/api/v1/orders/{order['id']}", token)
    assert got["order"]["status"] == "refunded"


@pytest.mark.gen_test(timeout=30)
async def test_a_refund_wechat_reports_failed_goes_on_the_attention_list(api, kpay_app,
                                                                        fake_wechat):
    _, order = await paid_order(api, fake_wechat)
    refund = await kpay_app.money.orders.refund(order["id"], 300, "card", to="original")
    await fake_wechat.deliveries[-1].done.wait()
    genuine = signing.parse_xml(fake_wechat.refund_notify(refund["out_refund_no"]))
    info = signing.decrypt_req_info(genuine["req_info"], fake_wechat.api_key)
    closed = {**genuine, "req_info": signing.encrypt_req_info(
        {**info, "refund_status": "CHANGE"}, fake_wechat.api_key)}
    status, answer = await post_xml(api, REFUND_NOTIFY, signing.to_xml(closed))
    assert status == 200 and answer["return_code"] == "SUCCESS"  # recorded: stop resending
    stored = await kpay_app.store["refunds"].find_one({"_id": refund["_id"]})
    assert stored["provider_status"] == "CHANGE"
    record = (await notifies(kpay_app, kind="refund"))[-1]
    assert record["verdict"] == "refund_change" and record["needs_attention"] is True
    [entry] = await kpay_app.attention.list()
    assert entry["subject"] == f"refund:{refund['_id']}" and entry["source"] == "money.notify"
