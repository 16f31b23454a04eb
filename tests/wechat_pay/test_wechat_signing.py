"""The wire format: WeChat's published signature examples, safe parsing, req_info."""

from __future__ import annotations

import pytest

from plugins.wechat_pay import signing

# The example from WeChat Pay's signature documentation (API v2).
EXAMPLE = {"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "device_info": "1000",
           "body": "test", "nonce_str": "ibuaiVcKdpRxkhJA"}
EXAMPLE_KEY = "192006250b4c09247ec02edce69f6a2d"


def test_signatures_match_wechats_documented_example():
    assert signing.sign(EXAMPLE, EXAMPLE_KEY) == "9A0A8659F005D6984697E2CA0A9CF3B7"
    assert signing.sign(EXAMPLE, EXAMPLE_KEY, "HMAC-SHA256") == (
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6")


def test_empty_values_and_sign_are_left_out_of_the_signature():
    with_extras = {**EXAMPLE, "attach": "", "sign": "whatever", "detail": None}
    assert signing.sign(with_extras, EXAMPLE_KEY) == signing.sign(EXAMPLE, EXAMPLE_KEY)


@pytest.mark.parametrize("sign_type", ["MD5", "HMAC-SHA256"])
def test_verify_round_trip_and_tampering(sign_type):
    params = signing.parse_xml(signing.signed_xml(EXAMPLE, EXAMPLE_KEY, sign_type))
    assert signing.verify(params, EXAMPLE_KEY)
    assert not signing.verify({**params, "body": "test2"}, EXAMPLE_KEY)
    assert not signing.verify(params, EXAMPLE_KEY[:-1] + "0")
    assert not signing.verify({**params, "sign": params["sign"].lower()}, EXAMPLE_KEY)
    assert not signing.verify({**params, "sign_type": "SHA1"}, EXAMPLE_KEY)
    assert not signing.verify({k: v for k, v in params.items() if k != "sign"}, EXAMPLE_KEY)


def test_cdata_end_marker_in_a_value_survives():
    params = {"body": "a]]>b<c>&d"}
    assert signing.parse_xml(signing.to_xml(params)) == params


def test_refund_req_info_round_trip_and_wrong_key():
    info = {"out_refund_no": "rf1", "refund_fee": "100", "refund_status": "SUCCESS"}
    encrypted = signing.encrypt_req_info(info, EXAMPLE_KEY)
    assert signing.decrypt_req_info(encrypted, EXAMPLE_KEY) == info
    with pytest.raises(signing.XmlError):
        signing.decrypt_req_info(encrypted, "x" * 32)


def test_answers_without_sign_type_are_checked_with_the_expected_type():
    # WeChat signs an answer as the request was signed, and does not say how.
    answer = signing.parse_xml(signing.signed_xml(EXAMPLE, EXAMPLE_KEY, "HMAC-SHA256",
                                                  declare=False))
    assert "sign_type" not in answer
    assert not signing.verify(answer, EXAMPLE_KEY)  # MD5 by default
    assert signing.verify(answer, EXAMPLE_KEY, ("HMAC-SHA256",))
    assert signing.verify(answer, EXAMPLE_KEY, ("MD5", "HMAC-SHA256"))
