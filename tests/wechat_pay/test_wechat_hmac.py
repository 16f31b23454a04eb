"""The same flows with sign_type = HMAC-SHA256 (requests, answers, notifies, paySign)."""

from __future__ import annotations

import pytest
from wechat_helpers import NOTIFY, create_order, ledger_count, post_xml

from plugins.wechat_pay import signing


@pytest.fixture
def kpay_overrides(fake_wechat):
    return {"wechat_pay": fake_wechat.settings(sign_type="HMAC-SHA256")}


@pytest.mark.gen_test
async def test_hmac_sha256_flow(api, kpay_app, fake_wechat):
    token = await api.login("alice")
    created = await create_order(api, token, "jsapi", 250, openid="o-alice")
    pay = created["pay"]
    assert pay["signType"] == "HMAC-SHA256"
    unsigned = {k: v for k, v in pay.items() if k != "paySign"}
    assert pay["paySign"] == signing.sign(unsigned, fake_wechat.api_key, "HMAC-SHA256")
    out_trade_no = created["order"]["out_trade_no"]
    assert fake_wechat.orders[out_trade_no].sign_type == "HMAC-SHA256"
    body = fake_wechat.payment_notify(out_trade_no)
    assert "<sign_type><![CDATA[HMAC-SHA256]]></sign_type>" in body
    # An HMAC notify whose sign was computed as MD5 is not accepted.
    params = signing.parse_xml(body)
    params["sign"] = signing.sign(params, fake_wechat.api_key, "MD5")
    status, answer = await post_xml(api, NOTIFY, signing.to_xml(params))
    assert status == 400 and answer["return_code"] == "FAIL"
    assert await ledger_count(kpay_app, created["order"]["id"]) == 0
    status, answer = await post_xml(api, NOTIFY, body)
    assert status == 200 and answer["return_code"] == "SUCCESS"
    assert await ledger_count(kpay_app, created["order"]["id"]) == 1
