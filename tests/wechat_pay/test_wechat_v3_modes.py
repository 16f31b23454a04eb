"""WeChat's signatures in public-key mode (微信支付公钥, PUB_KEY_ID_...), in certificate
mode (平台证书) and with both configured during a switch: what is configured verifies
answers and callbacks; a key that is not configured is an unknown serial."""

from __future__ import annotations

import pytest
from wechat_helpers import create_order, notifies
from wechat_v3_helpers import V3_NOTIFY, paid_v3_order, post_callback

from kpay.testing import assert_books_balanced

TRUSTED = {"public_key": ["public_key"], "certificate": ["certificate"],
           "both": ["public_key", "certificate"]}


@pytest.fixture(params=sorted(TRUSTED))
def trust(request):
    return request.param


@pytest.fixture
def kpay_overrides(fake_wechat_v3, tmp_path, trust):
    fake_wechat_v3.mode = TRUSTED[trust][0]
    return {"wechat_pay": fake_wechat_v3.settings(tmp_path / "keys", trust=trust)}


@pytest.mark.gen_test(timeout=60)
async def test_configured_keys_verify_and_others_are_unknown(api, kpay_app, fake_wechat_v3,
                                                              trust):
    for mode in TRUSTED[trust]:
        fake_wechat_v3.mode = mode  # answers and callbacks signed with this key
        await paid_v3_order(api, fake_wechat_v3, "native", 100, user=f"u-{mode}")
    for mode in sorted(set(TRUSTED["both"]) - set(TRUSTED[trust])):
        token = await api.login("mallory")
        fake_wechat_v3.mode = TRUSTED[trust][0]
        order = (await create_order(api, token, "native", 100))["order"]
        fake_wechat_v3.orders[order["out_trade_no"]].trade_state = "SUCCESS"
        body = fake_wechat_v3.payment_notify(order["out_trade_no"])
        status, _ = await post_callback(api, V3_NOTIFY, body,
                                        fake_wechat_v3.signed_headers(body, mode=mode))
        assert status == 400
        assert await notifies(kpay_app, verdict="unknown_serial")
        # An answer signed with a key kpay does not have is not believed either.
        fake_wechat_v3.mode = mode
        status, body = await api.post("/api/v1/orders", {
            "item": {"kind": "wallet_topup", "amount": 100}, "channel": "native"}, token)
        assert status == 502 and "not believed" in body["error"]["message"]
    await assert_books_balanced(kpay_app)
