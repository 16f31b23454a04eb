"""The payment notify against the real server, with notifies built by the local fake:
forged and broken ones change nothing; real ones pay exactly once."""

from __future__ import annotations

import asyncio

import pytest
import tornado.httpclient
from wechat_helpers import NOTIFY, create_order, ledger_count, notifies, post_xml

from kpay import hookimpl
from plugins.wechat_pay import signing

PAID_ORDERS: list[str] = []


class CountPaid:
    @hookimpl
    def on_order_paid(self, order):
        PAID_ORDERS.append(order["_id"])


@pytest.fixture
def kpay_extra_plugins():
    PAID_ORDERS.clear()
    return [("count_paid", CountPaid())]


async def pending_order(api, fake_wechat, amount=800):
    token = await api.login("bob")
    order = (await create_order(api, token, "native", amount))["order"]
    assert order["out_trade_no"] in fake_wechat.orders
    return token, order


async def assert_untouched(api, kpay_app, token, order):
    _, body = await api.get(f"/api/v1/orders/{order['id']}", token)
    assert body["order"]["status"] == "pending"
    assert await ledger_count(kpay_app, order["id"]) == 0
    _, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 0


@pytest.mark.gen_test
async def test_valid_notify_pays_once_and_answers_documented_success(api, kpay_app,
                                                                     fake_wechat):
    token, order = await pending_order(api, fake_wechat)
    body = fake_wechat.payment_notify(order["out_trade_no"], transaction_id="4200abc")
    status, text = await api.request("POST", NOTIFY, raw=body)
    assert status == 200
    assert text == ("<xml><return_code><![CDATA[SUCCESS]]></return_code>"
                    "<return_msg><![CDATA[OK]]></return_msg></xml>")
    # WeChat resends; the copy is answered SUCCESS and books nothing more.
    status, answer = await post_xml(api, NOTIFY, body)
    assert status == 200 and answer["return_code"] == "SUCCESS"
    _, got = await api.get(f"/api/v1/orders/{order['id']}", token)
    assert got["order"]["status"] == "fulfilled"
    assert await ledger_count(kpay_app, order["id"]) == 1
    assert PAID_ORDERS == [order["id"]]
    verdicts = sorted(n["verdict"] for n in await notifies(kpay_app))
    assert verdicts == ["duplicate", "paid"]
    stored = await kpay_app.store["orders"].find_one({"_id": order["id"]})
    assert stored["transaction_id"] == "4200abc" and stored["paid_via"] == "notify"


@pytest.mark.gen_test
@pytest.mark.parametrize("changes, verdict", [
    ({"sign": "0" * 32}, "bad_signature"),
    ({"total_fee": 1}, "amount_mismatch"),
    ({"appid": "wx-someone-else"}, "wrong_appid"),
    ({"mch_id": "1234567890"}, "wrong_mch_id"),
])
async def test_refused_notifies_change_nothing(api, kpay_app, fake_wechat, changes, verdict):
    token, order = await pending_order(api, fake_wechat)
    body = fake_wechat.payment_notify(order["out_trade_no"], **changes)
    status, answer = await post_xml(api, NOTIFY, body)
    assert status == 400 and answer["return_code"] == "FAIL"
    await assert_untouched(api, kpay_app, token, order)
    [record] = await notifies(kpay_app)
    assert record["verdict"] == verdict and record["out_trade_no"] == order["out_trade_no"]
    assert PAID_ORDERS == []


@pytest.mark.gen_test
async def test_signature_with_another_key_is_refused(api, kpay_app, fake_wechat):
    token, order = await pending_order(api, fake_wechat)
    params = signing.parse_xml(fake_wechat.payment_notify(order["out_trade_no"]))
    params.pop("sign")
    forged = signing.signed_xml(params, "k" * 32)
    status, answer = await post_xml(api, NOTIFY, forged)
    assert status == 400 and answer["return_code"] == "FAIL"
    await assert_untouched(api, kpay_app, token, order)


@pytest.mark.gen_test
async def test_unknown_out_trade_no_is_refused(api, kpay_app, fake_wechat):
    _, order = await pending_order(api, fake_wechat)
    body = fake_wechat.payment_notify(order["out_trade_no"], out_trade_no="o" + "0" * 24)
    status, answer = await post_xml(api, NOTIFY, body)
    assert status == 400 and answer["return_code"] == "FAIL"
    [record] = await notifies(kpay_app)
    assert record["verdict"] == "unknown_order"


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<xml><return_code>&lol9;</return_code></xml>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<xml><return_code>SUCCESS</return_code><out_trade_no>&secret;</out_trade_no></xml>"""

PLAIN_DTD = """<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://127.0.0.1:1/x.dtd">
<xml><return_code>SUCCESS</return_code></xml>"""


@pytest.mark.gen_test
@pytest.mark.parametrize("body", [
    BILLION_LAUGHS, EXTERNAL_ENTITY, PLAIN_DTD, "not xml at all", '{"return_code": "SUCCESS"}',
    "", "<xml><a><b>nested</b></a></xml>", "<other>root</other>", b"\xff\xfe<xml/>",
    "<xml>" + "<a>x</a>" * 20000 + "</xml>",
])
async def test_unsafe_or_broken_bodies_are_refused(api, kpay_app, fake_wechat, body):
    token, order = await pending_order(api, fake_wechat)
    status, answer = await post_xml(api, NOTIFY, body)
    assert status == 400 and answer["return_code"] == "FAIL"
    await assert_untouched(api, kpay_app, token, order)
    [record] = await notifies(kpay_app)
    assert record["verdict"] == "bad_xml"


@pytest.mark.gen_test
async def test_notify_for_a_closed_order_books_nothing_and_is_flagged(api, kpay_app,
                                                                      fake_wechat):
    token, order = await pending_order(api, fake_wechat)
    await kpay_app.money.orders.close(order["id"], "expired")
    status, answer = await post_xml(api, NOTIFY, fake_wechat.payment_notify(order["out_trade_no"]))
    # Acknowledged (resending cannot help), recorded for a person to refund it.
    assert status == 200 and answer["return_code"] == "SUCCESS"
    _, got = await api.get(f"/api/v1/orders/{order['id']}", token)
    assert got["order"]["status"] == "closed"
    assert await ledger_count(kpay_app, order["id"]) == 0
    [record] = await notifies(kpay_app)
    assert record["verdict"] == "paid_after_close" and record["needs_attention"] is True


@pytest.mark.gen_test(timeout=60)
async def test_fifty_identical_notifies_at_once_pay_once(api, kpay_app, fake_wechat):
    token, order = await pending_order(api, fake_wechat, amount=990)
    body = fake_wechat.payment_notify(order["out_trade_no"])
    # A client of its own with 50 connections, so all 50 are in flight together.
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=50)
    try:
        results = await asyncio.gather(*(post_xml(api, NOTIFY, body, client)
                                         for _ in range(50)))
    finally:
        client.close()
    assert all(status == 200 and a["return_code"] == "SUCCESS" for status, a in results)
    assert await ledger_count(kpay_app, order["id"]) == 1
    assert PAID_ORDERS == [order["id"]]
    _, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 990
    verdicts = [n["verdict"] for n in await notifies(kpay_app)]
    assert len(verdicts) == 50 and verdicts.count("paid") == 1
    assert verdicts.count("duplicate") == 49


@pytest.mark.gen_test(timeout=30)
async def test_fake_resends_on_wechat_schedule_until_success(api, kpay_app, fake_wechat):
    _, order = await pending_order(api, fake_wechat)
    fake_wechat.retry_scale = 0.00001  # the full 24 h schedule in about a second
    url = f"http://127.0.0.1:{kpay_app.port}{NOTIFY}"
    refused = fake_wechat.send(url, fake_wechat.payment_notify(order["out_trade_no"],
                                                               total_fee=1))
    await refused.done.wait()
    assert not refused.succeeded and len(refused.attempts) == 16  # first try + 15 resends
    assert len(await notifies(kpay_app, verdict="amount_mismatch")) == 16
    delivery = fake_wechat.pay(order["out_trade_no"])
    await delivery.done.wait()
    assert delivery.succeeded and len(delivery.attempts) == 1
