"""The fakes of WeChat's servers read amounts and timestamps as WeChat does: one written
in other digits ("²", which str.isdigit() takes and int() refuses) gets WeChat's refusal,
not a 500 (kpay/core/digits.py)."""

from __future__ import annotations

import json

import pytest
import tornado.httpclient

from plugins.wechat_pay import signing, v3_signing


async def pay_api(fake, endpoint: str, params: dict[str, str]) -> dict[str, str]:
    """Call the v2 fake as kpay does: signed XML in, signed XML out."""
    body = signing.signed_xml({"appid": fake.appid, "mch_id": fake.mch_id,
                               "nonce_str": "n0", **params}, fake.api_key)
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{fake.base_url}{endpoint}", method="POST", body=body, raise_error=False)
    assert response.code == 200, response.code
    return signing.parse_xml(response.body)


@pytest.mark.gen_test(timeout=30)
async def test_v2_amounts_of_other_digits_are_a_param_error(fake_wechat):
    order = {"body": "b", "out_trade_no": "o1", "spbill_create_ip": "127.0.0.1",
             "notify_url": "http://127.0.0.1:9/notify", "trade_type": "NATIVE",
             "product_id": "p1"}
    answer = await pay_api(fake_wechat, "pay/unifiedorder", {**order, "total_fee": "²"})
    assert (answer["result_code"], answer["err_code"]) == ("FAIL", "PARAM_ERROR"), answer

    answer = await pay_api(fake_wechat, "pay/unifiedorder", {**order, "total_fee": "100"})
    assert answer["result_code"] == "SUCCESS", answer
    fake_wechat.orders["o1"].trade_state = "SUCCESS"
    for fees in ({"refund_fee": "²", "total_fee": "100"}, {"refund_fee": "1", "total_fee": "²"}):
        answer = await pay_api(fake_wechat, "secapi/pay/refund",
                               {"out_trade_no": "o1", "out_refund_no": "r1", **fees})
        assert (answer["result_code"], answer["err_code"]) == ("FAIL", "PARAM_ERROR"), fees
    assert fake_wechat.refunds == {}


@pytest.mark.gen_test(timeout=30)
async def test_v3_authorization_timestamp_of_other_digits_is_a_sign_error(fake_wechat_v3):
    fake = fake_wechat_v3
    path = f"/v3/pay/transactions/out-trade-no/o1?mchid={fake.mchid}"
    message = v3_signing.request_message("GET", path, "²", "n0", b"")
    authorization = v3_signing.authorization(
        fake.mchid, fake.merchant_serial, "n0", "²",
        v3_signing.rsa_sign(fake.merchant_key, message))
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        fake.base_url.rstrip("/") + path, headers={"Authorization": authorization},
        raise_error=False)
    assert response.code == 401, response.code
    assert json.loads(response.body)["code"] == "SIGN_ERROR"
