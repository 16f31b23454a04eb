"""Dev mode without a merchant runs the fake WeChat inside kpay; production without a
merchant refuses to start, naming the missing keys."""

from __future__ import annotations

import pytest
import tornado.httpclient
from wechat_helpers import create_order

from kpay.core.errors import ConfigError, PaymentProviderError
from plugins.wechat_pay import runtime_of


@pytest.fixture
def kpay_overrides(request):
    if "missing_certificate" in request.node.name:
        fake = request.getfixturevalue("fake_wechat")
        return {"wechat_pay": {**fake.settings(),
                               "mch_cert": "/nonexistent/apiclient_cert.pem",
                               "mch_key": "/nonexistent/apiclient_key.pem"}}
    return {}  # no [wechat_pay] at all, as in config/default.toml


@pytest.mark.gen_test
async def test_dev_mode_without_merchant_uses_the_local_fake(api, kpay_app, caplog):
    runtime = runtime_of(kpay_app)
    assert runtime.effective.uses_fake and runtime.fake is not None
    assert runtime.effective.pay_api == runtime.fake.base_url
    assert runtime.fake.base_url.startswith("http://127.0.0.1:")
    token = await api.login("demo")
    created = await create_order(api, token, "native", 990)
    assert created["pay"]["code_url"].startswith("weixin://")
    # A demo payer "pays" at the fake, which sends the signed notify to kpay.
    out_trade_no = created["order"]["out_trade_no"]
    await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{runtime.fake.base_url}_fake/pay?out_trade_no={out_trade_no}", method="POST", body="")
    await runtime.fake.deliveries[-1].done.wait()
    _, got = await api.get(f"/api/v1/orders/{created['order']['id']}", token)
    assert got["order"]["status"] == "fulfilled"
    # The core's dev payer still works alongside.
    other = await create_order(api, token, "mweb", 100)
    status, paid = await api.post(f"/api/v1/dev/orders/{other['order']['id']}/pay", token=token)
    assert status == 200 and paid["order"]["status"] == "fulfilled"


def test_without_dev_mode_a_missing_merchant_stops_start_up(io_loop, kpay_settings):
    settings = kpay_settings.settings
    settings = settings.replace("dev", enabled=False)
    app = kpay_settings.new_app(settings)
    try:
        with pytest.raises(ConfigError) as stopped:
            io_loop.run_sync(app.start)
    finally:
        io_loop.run_sync(app.store.close)
    message = str(stopped.value)
    for key in ("appid", "mch_id", "api_key", "mch_cert", "mch_key"):
        assert key in message
    assert "KPAY_WECHAT_PAY__APPID" in message


def test_without_dev_mode_a_half_configured_merchant_stops_start_up(io_loop, kpay_settings):
    settings = kpay_settings.settings
    settings = settings.replace("dev", enabled=False).replace(
        "wechat_pay", appid="wx1", mch_id="19", api_key="k" * 32)
    app = kpay_settings.new_app(settings)
    try:
        with pytest.raises(ConfigError, match="missing mch_cert, mch_key"):
            io_loop.run_sync(app.start)
    finally:
        io_loop.run_sync(app.store.close)


@pytest.mark.gen_test
async def test_fake_mweb_page_and_openapi_list_the_wechat_routes(api, kpay_app):
    token = await api.login("demo")
    created = await create_order(api, token, "mweb", 100)
    page = await tornado.httpclient.AsyncHTTPClient().fetch(created["pay"]["mweb_url"])
    assert "确认支付" in page.body.decode()
    _, document = await api.get("/api/v1/openapi.json")
    for path in ("/api/v1/pay/wechat/notify", "/api/v1/pay/wechat/refund-notify",
                 "/api/v1/wechat/oauth/start", "/api/v1/wechat/oauth/callback",
                 "/api/v1/wechat/jssdk"):
        assert path in document["paths"]


def test_production_with_a_merchant_talks_to_the_configured_server(io_loop, kpay_settings,
                                                                   fake_wechat, tmp_path):
    from wechat_certs import make_certificates

    certs = make_certificates(tmp_path)
    settings = kpay_settings.settings
    settings = settings.replace("dev", enabled=False).replace(
        "wechat_pay", **fake_wechat.settings(), mch_cert=certs["merchant_cert"],
        mch_key=certs["merchant_key"], notify_url="https://pay.example.com/notify")
    app = kpay_settings.new_app(settings)
    io_loop.run_sync(app.start)
    try:
        runtime = runtime_of(app)
        assert not runtime.effective.uses_fake and runtime.fake is None
        assert runtime.pay.API_BASE_URL == fake_wechat.base_url
        assert runtime.notify_url() == "https://pay.example.com/notify"
    finally:
        io_loop.run_sync(app.stop)


@pytest.mark.gen_test
async def test_a_missing_certificate_file_is_reported_and_refunds_fail_closed(
        api, kpay_app, fake_wechat, caplog):
    # Started with kpay_overrides below: a merchant whose certificate file is missing.
    started = " ".join(r.getMessage() for r in caplog.get_records("setup"))
    assert "mch_cert: no file at /nonexistent/apiclient_cert.pem" in started
    token = await api.login("rita")
    order = (await create_order(api, token, "native", 300))["order"]
    delivery = fake_wechat.pay(order["out_trade_no"])
    await delivery.done.wait()
    with pytest.raises(PaymentProviderError, match=r"apiclient_cert\.pem"):
        await kpay_app.money.orders.refund(order["id"], 300, "no_file", to="original")
    assert fake_wechat.calls["secapi/pay/refund"] == 0
    stored = await kpay_app.store["orders"].find_one({"_id": order["id"]})
    assert stored["refundable"] == 300
