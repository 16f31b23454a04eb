"""WeChat Pay on the core's notify routes: the core serves /api/v1/pay/wechat/...
for the provider's url_name, the provider declares its delay, capabilities and refund
numbers, and no plugin touches the core's collections."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from wechat_helpers import NOTIFY, REFUND_NOTIFY, create_order, notifies, post_xml

from kpay.core.money.notify import NotifyHandler
from plugins.wechat_pay import runtime_of

ROOT = Path(__file__).resolve().parents[2]


def test_plugins_never_touch_the_core_collections():
    found = subprocess.run(
        ["grep", "-rn", r"orders.collection\|orders.refunds\|store\[\"orders\|store\[\"refunds",
         "plugins", "examples"], cwd=ROOT, capture_output=True, text=True)
    assert found.stdout == "", found.stdout


@pytest.mark.gen_test
async def test_the_core_serves_the_wechat_notify_routes(api, kpay_app):
    routes = {route.path: route for route in kpay_app.routes}
    for path in (NOTIFY, REFUND_NOTIFY):
        assert issubclass(routes[path].handler, NotifyHandler)
        assert routes[path].handler.provider is runtime_of(kpay_app).provider
    status, document = await api.get("/api/v1/openapi.json")
    assert status == 200
    operation = document["paths"][NOTIFY]["post"]
    assert "text/xml" in operation["requestBody"]["content"]
    assert "text/xml" in operation["responses"]["200"]["content"]


def test_the_provider_declares_its_delay_capabilities_and_url_name(kpay_app):
    provider = runtime_of(kpay_app).provider
    assert provider.url_name == "wechat"
    assert provider.settle_after == timedelta(minutes=5)
    assert provider.capabilities.refunds and provider.capabilities.partial_refunds
    assert not provider.capabilities.payouts


@pytest.mark.parametrize("refund_id", [
    "rfo0123456789abcdef01234567live_question_refunded", "fulfil-failed-o12|*@x", "u1",
    "a key with spaces", "x" * 65, "退款",
])
def test_refund_numbers_are_those_refunds_always_had(kpay_app, refund_id):
    # The numbering kpay/core/money/refunds.py used before providers made their own.
    if all(c.isascii() and (c.isalnum() or c in "_-|*@") for c in refund_id) \
            and len(refund_id) <= 64:
        before = refund_id
    else:
        before = "r" + hashlib.sha256(refund_id.encode()).hexdigest()[:31]
    assert runtime_of(kpay_app).provider.refund_number(refund_id) == before


@pytest.mark.gen_test
async def test_a_paid_after_close_notify_goes_on_the_attention_list(api, kpay_app,
                                                                   fake_wechat):
    token = await api.login("bob")
    order = (await create_order(api, token, "native", 800))["order"]
    await kpay_app.money.orders.close(order["id"], "expired")
    status, answer = await post_xml(api, NOTIFY, fake_wechat.payment_notify(order["out_trade_no"]))
    assert status == 200 and answer["return_code"] == "SUCCESS"
    [entry] = await kpay_app.attention.list()
    assert entry["subject"] == f"order:{order['id']}"
    assert entry["details"]["provider"] == "wechat_pay"
    [record] = await notifies(kpay_app)
    assert record["order_id"] == order["id"] and record["needs_attention"] is True


@pytest.mark.gen_test
async def test_a_notify_for_another_providers_order_is_refused(api, kpay_app, fake_wechat):
    token = await api.login("bob")
    order = (await create_order(api, token, "native", 800))["order"]
    # As if the order were on a channel WeChat does not serve (another provider's).
    await kpay_app.store["orders"].update_one({"_id": order["id"]},
                                              {"$set": {"channel": "wallet"}})
    status, answer = await post_xml(api, NOTIFY, fake_wechat.payment_notify(order["out_trade_no"]))
    assert status == 400 and answer["return_code"] == "FAIL"
    [record] = await notifies(kpay_app)
    assert record["verdict"] == "unknown_order"
    assert (await kpay_app.money.orders.get(order["id"]))["status"] == "pending"
