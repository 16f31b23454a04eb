"""Switching a merchant from API v2 to v3: an order created under v2, the config
switched to ``api_version = "v3"`` and the app restarted. The v2 order's notify still
books through v2 (/api/v1/pay/wechat/notify) and its refund goes through v2; a new order
goes through v3; neither provider pays the other's order."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from wechat_certs import make_certificates, server_context
from wechat_helpers import NOTIFY, create_order, post_xml
from wechat_v3_helpers import V3_NOTIFY, post_callback

from kpay.testclients import ApiClient
from kpay.testing import assert_books_balanced
from plugins.wechat_pay import runtime_of
from plugins.wechat_pay.fake import FakeWeChat
from plugins.wechat_pay.v3_fake import FakeWeChatV3, pem_private


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    """The fake's TLS, and one RSA merchant key for both APIs (apiclient_key.pem: v2's
    client certificate key and v3's signing key, as at WeChat)."""
    directory = tmp_path_factory.mktemp("wechat-certs")
    paths = make_certificates(directory)
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate(Path(paths["ca"]).read_bytes())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(x509.Name(
                [x509.NameAttribute(NameOID.COMMON_NAME, "1900000109")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(ca.not_valid_before_utc).not_valid_after(ca.not_valid_after_utc)
            .sign(ca_key, hashes.SHA256()))
    (directory / "apiclient_cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "apiclient_key.pem").write_bytes(pem_private(key))
    return {**paths, "merchant_cert": str(directory / "apiclient_cert.pem"),
            "merchant_key": str(directory / "apiclient_key.pem")}


@pytest.fixture
def fake_wechat_v3(io_loop, certificates):
    key = serialization.load_pem_private_key(
        Path(certificates["merchant_key"]).read_bytes(), None)
    fake = FakeWeChatV3(retry_scale=0.001, merchant_key=key)
    io_loop.run_sync(fake.start)
    yield fake
    io_loop.run_sync(fake.stop)


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


@pytest.mark.gen_test(timeout=60)
async def test_v2_orders_keep_their_provider_after_a_switch_to_v3(
        api, kpay_app, kpay_settings, fake_wechat, fake_wechat_v3, tmp_path):
    token = await api.login("rita")
    old = (await create_order(api, token, "native", 500))["order"]
    assert (await kpay_app.money.orders.get(old["id"]))["provider"] == "wechat_pay"
    await kpay_app.stop()  # the fixture's stop at the end is then a no-op

    # v3's keys added to v2's; mch_key (apiclient_key.pem) serves both.
    v3 = fake_wechat_v3.settings(tmp_path / "v3")
    del v3["mch_key"]
    settings = kpay_settings.settings.replace("wechat_pay", **v3)
    restarted = kpay_settings.new_app(settings)
    runtime = None
    await restarted.start()
    try:
        runtime = runtime_of(restarted)
        assert runtime.v3 is not None and runtime.v3.merchant is not None
        assert restarted.money.orders.providers["native"].identifier == \
            "wechat_pay_v3"
        api2 = ApiClient(restarted)
        token = await api2.login("rita")
        # The v2 order's notify (WeChat resends to the old URL) books through v2.
        fake_wechat.orders[old["out_trade_no"]].trade_state = "SUCCESS"
        fake_wechat.orders[old["out_trade_no"]].transaction_id = "4200old"
        status, answer = await post_xml(api2, NOTIFY,
                                        fake_wechat.payment_notify(old["out_trade_no"]))
        assert status == 200 and answer["return_code"] == "SUCCESS"
        assert (await restarted.money.orders.get(old["id"]))["status"] == "fulfilled"
        # A v3 callback naming the v2 order is not v3's to book.
        fake_wechat_v3.orders[old["out_trade_no"]] = fake_v3_copy(fake_wechat_v3, old)
        body = fake_wechat_v3.payment_notify(old["out_trade_no"])
        status, _ = await post_callback(api2, V3_NOTIFY, body,
                                        fake_wechat_v3.signed_headers(body))
        assert status == 400
        # Its refund goes through v2 (secapi with the merchant certificate).
        refund = await restarted.money.orders.refund(old["id"], 200, "x", to="original")
        assert refund["status"] == "succeeded"
        assert fake_wechat.calls["secapi/pay/refund"] == 1
        assert fake_wechat_v3.calls["refunds"] == 0
        # A new order goes through v3.
        new = (await create_order(api2, token, "native", 300))["order"]
        assert (await restarted.money.orders.get(new["id"]))["provider"] == "wechat_pay_v3"
        assert new["out_trade_no"] in fake_wechat_v3.orders
        assert new["out_trade_no"] not in fake_wechat.orders
        delivery = fake_wechat_v3.pay(new["out_trade_no"])
        await delivery.done.wait()
        assert delivery.succeeded
        ledger = restarted.money.ledger
        assert await ledger.balance("external:wechat_pay") == -300
        assert await ledger.balance("external:wechat_pay_v3") == -300
        await assert_books_balanced(restarted)
    finally:
        await restarted.stop()


def fake_v3_copy(fake, order):
    from plugins.wechat_pay.v3_fake import FakeV3Order

    return FakeV3Order(order["out_trade_no"], order["amount"], "NATIVE", "",
                       trade_state="SUCCESS", transaction_id="4200forged")
