"""The ``[wechat_pay]`` API v3 keys: what start-up refuses, secrets out of reprs, and
dev mode without v3 keys running the local fake v3 server."""

from __future__ import annotations

import pytest
from wechat_helpers import create_order

from kpay.core.errors import ConfigError
from plugins.wechat_pay import runtime_of, v3_signing
from plugins.wechat_pay.settings import WeChatPaySettings
from plugins.wechat_pay.v3_client import check_v3, load_merchant
from plugins.wechat_pay.v3_fake import FakeWeChatV3

API_V3_KEY = "Vb7Qm2Xc9Lr4Tn8Kd1Zh5Wg3Pf6Sj0Ye"


@pytest.fixture
def kpay_overrides():
    return {"wechat_pay": {"api_version": "v3"}}  # dev mode, no keys: the fakes


def v3_settings(tmp_path, **changes) -> WeChatPaySettings:
    fake = FakeWeChatV3(api_v3_key=API_V3_KEY)
    return WeChatPaySettings(**{**fake.settings(tmp_path, trust="both"), **changes})


def test_api_version_defaults_to_v2_and_takes_only_v2_or_v3():
    assert WeChatPaySettings().api_version == "v2"
    with pytest.raises(ValueError):
        WeChatPaySettings(api_version="v4")


@pytest.mark.parametrize("missing, named", [
    ("mch_serial_no", "mch_serial_no"), ("api_v3_key", "api_v3_key"),
    ("mch_key", "mch_key"), ("appid", "appid"),
])
def test_a_missing_v3_key_is_named(tmp_path, missing, named):
    with pytest.raises(ConfigError, match=named):
        check_v3(v3_settings(tmp_path, **{missing: ""}), False, str(tmp_path))


def test_wechats_key_is_required_as_a_public_key_or_certificates(tmp_path):
    bare = dict(wechatpay_public_key_id="", wechatpay_public_key="", platform_certs="")
    with pytest.raises(ConfigError, match="wechatpay_public_key_id"):
        check_v3(v3_settings(tmp_path, **bare), False, str(tmp_path))
    assert check_v3(v3_settings(tmp_path, platform_certs=""), False, str(tmp_path)) is False
    assert check_v3(v3_settings(tmp_path, wechatpay_public_key_id=""), False,
                    str(tmp_path)) is False


def test_the_api_v3_key_must_be_32_characters_and_strong_outside_dev(tmp_path):
    with pytest.raises(ConfigError, match="32-character"):
        check_v3(v3_settings(tmp_path, api_v3_key="short"), True, str(tmp_path))
    with pytest.raises(ConfigError, match=r"\[wechat_pay\] api_v3_key"):
        check_v3(v3_settings(tmp_path, api_v3_key="k" * 32), False, str(tmp_path))
    assert check_v3(v3_settings(tmp_path, api_v3_key="k" * 32), True, str(tmp_path)) is False
    assert check_v3(WeChatPaySettings(api_version="v3"), True) is True  # dev: the fake


def test_key_files_are_checked_and_secrets_stay_out_of_reprs(tmp_path):
    merchant = load_merchant(v3_settings(tmp_path))
    assert API_V3_KEY not in repr(merchant) and "PRIVATE" not in repr(merchant)
    assert len(merchant.platform.keys) == 2  # the public key and the certificate
    with pytest.raises(ConfigError, match="mch_key: cannot read"):
        load_merchant(v3_settings(tmp_path, mch_key=str(tmp_path / "nowhere.pem")))
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="wechatpay_public_key is not"):
        load_merchant(v3_settings(tmp_path, wechatpay_public_key=str(tmp_path / "junk.pem")))
    with pytest.raises(ConfigError, match="platform_certs holds no"):
        load_merchant(v3_settings(tmp_path, platform_certs=str(tmp_path / "junk.pem")))


@pytest.mark.gen_test(timeout=30)
async def test_dev_mode_without_v3_keys_uses_the_local_fake_v3(api, kpay_app):
    runtime = runtime_of(kpay_app)
    fake = runtime.v3.fake
    assert fake is not None and runtime.v3.merchant.uses_fake
    assert kpay_app.money.orders.providers["native"].identifier == "wechat_pay_v3"
    token = await api.login("rita")
    order = (await create_order(api, token, "native", 200))["order"]
    delivery = fake.pay(order["out_trade_no"])
    await delivery.done.wait()
    assert delivery.succeeded
    assert (await kpay_app.money.orders.get(order["id"]))["status"] == "fulfilled"


def test_a_certificate_serial_matches_in_any_case_and_with_leading_zeros():
    fake = FakeWeChatV3()
    keys = fake.platform_keys("certificate")
    headers = fake.signed_headers(b"{}", mode="certificate")
    headers[v3_signing.SERIAL] = "00" + headers[v3_signing.SERIAL].lower()
    keys.verify(headers, b"{}")  # believed
    with pytest.raises(v3_signing.V3SignatureError, match="does not verify"):
        keys.verify(headers, b"{ }")


def test_no_merchant_secret_is_in_the_settings_repr():
    from plugins.wechat_pay.settings import WeChatPaySettings

    settings = WeChatPaySettings(api_key="k" * 32, app_secret="s" * 32, api_v3_key="v" * 32)
    assert not any(secret in repr(settings) for secret in ("k" * 32, "s" * 32, "v" * 32))
