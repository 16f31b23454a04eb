"""The fake WeChat H5 cashier (plugins/wechat_pay/fake_cashier.py), v2 and v3: it shows
the order, pays it, and returns the payer to a redirect_url on the merchant's own origin
only."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
import tornado.httpclient
from wechat_helpers import create_order

from kpay.testing import wait_until
from plugins.wechat_pay.fake_cashier import allowed_redirect


async def fetch(url: str, method: str = "GET", body: dict[str, str] | None = None) -> Any:
    client = tornado.httpclient.AsyncHTTPClient()
    return await client.fetch(url, method=method, raise_error=False, follow_redirects=False,
                              body=urlencode(body) if body is not None else None)


def test_only_the_merchants_origin_is_followed():
    notify = "http://127.0.0.1:8000/api/v1/pay/wechat/notify"
    assert allowed_redirect("http://127.0.0.1:8000/static/wallet.html?order=o1", notify)
    assert allowed_redirect("http://localhost:8000/static/wallet.html", notify)  # loopback
    for bad in ("http://127.0.0.1:8001/", "https://127.0.0.1:8000/", "http://evil.example/",
                "javascript:alert(1)", "//127.0.0.1:8000/", "http://127.0.0.1:8000/ x",
                "http://127.0.0.1:8000/" + "a" * 3000, ""):
        assert allowed_redirect(bad, notify) is None, bad


def test_a_backslash_cannot_hide_another_host():
    # Python reads the host after "@" (127.0.0.1); a browser reads "\" as "/", so the
    # Location would lead to evil.example.
    notify = "http://127.0.0.1:8000/api/v1/pay/wechat/notify"
    for bad in ("http://evil.example\\@127.0.0.1:8000/static/wallet.html",
                "http://evil.example\\x@localhost:8000/"):
        assert allowed_redirect(bad, notify) is None, bad


async def pay_through_cashier(api: Any, kpay_app: Any, token: str, page_url: str,
                              cashier_url: str) -> Any:
    redirect = f"http://127.0.0.1:{kpay_app.port}/static/wallet.html?order=o1"
    response = await fetch(f"{cashier_url}&{urlencode({'redirect_url': redirect})}")
    assert response.code == 200
    html = response.body.decode()
    assert "确认支付" in html and "kpay 示例商户" in html and "钱包充值 7.00 元" in html
    assert f"href='{redirect}'" in html  # 取消 goes back too
    prepay = page_url.split("prepay_id=", 1)[1].split("&", 1)[0]
    paid = await fetch(cashier_url.split("?", 1)[0] + "/pay", "POST",
                       {"prepay_id": prepay, "redirect_url": redirect})
    assert paid.code == 303 and paid.headers["Location"] == redirect
    return paid


@pytest.mark.gen_test(timeout=30)
async def test_v2_cashier_pays_and_returns(api, kpay_app, fake_wechat):
    token = await api.login("erin")
    created = await create_order(api, token, "mweb", 700)
    url = created["pay"]["mweb_url"]
    await pay_through_cashier(api, kpay_app, token, url, url)
    order_id = created["order"]["id"]

    async def fulfilled() -> bool:
        _, got = await api.get(f"/api/v1/orders/{order_id}", token)
        return got["order"]["status"] == "fulfilled"

    await wait_until(fulfilled)
    # Elsewhere, or no redirect_url: a plain 支付成功 page, no redirect.
    again = await fetch(f"{url}&redirect_url=https://evil.example/")
    assert again.code == 200 and "支付成功" in again.body.decode()
    assert (await fetch(fake_wechat.base_url + "_fake/mweb?prepay_id=nope")).code == 404


class TestV3:
    @pytest.fixture
    def kpay_overrides(self, fake_wechat_v3, tmp_path):
        return {"wechat_pay": fake_wechat_v3.settings(tmp_path / "keys")}

    @pytest.mark.gen_test(timeout=30)
    async def test_v3_cashier_pays_and_returns(self, api, kpay_app, fake_wechat_v3):
        token = await api.login("erin")
        created = await create_order(api, token, "mweb", 700)
        url = created["pay"]["mweb_url"]
        assert "/_fake/v3/mweb?prepay_id=" in url
        await pay_through_cashier(api, kpay_app, token, url, url)
        order = fake_wechat_v3.orders[created["order"]["out_trade_no"]]
        assert order.trade_state == "SUCCESS"
