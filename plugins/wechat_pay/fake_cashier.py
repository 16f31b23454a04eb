"""The fake WeChat H5 cashier: where an ``mweb_url`` (v2) or ``h5_url`` (v3) of the local
fakes leads. It looks like WeChat's own cashier (merchant, amount, 确认支付 / 取消) and,
as WeChat's H5 flow does, sends the payer back to the ``redirect_url`` the page appended,
after paying or cancelling. docs/wechat_pay.md "The local fake", README "Paying in dev
mode".

WeChat only returns to a ``redirect_url`` on the merchant's registered H5 domain; the
fake allows the origin of the order's ``notify_url`` (the kpay server that created it;
``localhost`` and ``127.0.0.1`` count as one), and shows a plain page otherwise.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import tornado.web
from tornado.escape import xhtml_escape

#: Longest redirect_url followed (WeChat's own limit is not published; this is generous).
MAX_REDIRECT = 2048
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MERCHANT = "kpay 示例商户"


def origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = "loopback" if parts.hostname in LOOPBACK else parts.hostname
    return parts.scheme, host, port


def allowed_redirect(redirect: str, notify_url: str) -> str | None:
    """``redirect`` if it may be followed for an order notified at ``notify_url``."""
    # A browser reads "\" as "/" where Python's urlsplit does not: "http://evil\@kpay/"
    # is kpay's origin to urlsplit and evil's to the browser. No backslash, then.
    if (not redirect or len(redirect) > MAX_REDIRECT or "\\" in redirect
            or any(ord(c) < 0x21 for c in redirect)):
        return None
    target = origin(redirect)
    return redirect if target is not None and target == origin(notify_url) else None


def amount_of(order: Any) -> int:
    return order.total_fee if hasattr(order, "total_fee") else order.total


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


STYLE = """
*{box-sizing:border-box}body{margin:0;background:#ededed;color:#191919;
font:16px/1.5 -apple-system,BlinkMacSystemFont,"PingFang SC","Microsoft YaHei",
"WenQuanYi Micro Hei",sans-serif}
header{height:48px;display:flex;align-items:center;justify-content:center;background:#ededed;
font-weight:600;border-bottom:1px solid #d9d9d9}
main{max-width:480px;margin:0 auto;padding:32px 16px}
.merchant{text-align:center;color:#4c4c4c;margin:0}
.amount{text-align:center;font-size:44px;font-weight:600;margin:4px 0 24px}
.amount small{font-size:28px;margin-right:4px}
dl{background:#fff;border-radius:8px;padding:4px 16px;margin:0 0 24px}
dl div{display:flex;justify-content:space-between;gap:16px;padding:12px 0}
dl div+div{border-top:1px solid #ededed}dt{color:#4c4c4c}dd{margin:0;text-align:right}
button,.cancel{display:block;width:100%;min-height:48px;border-radius:8px;font:inherit;
font-weight:600;text-align:center;text-decoration:none;line-height:48px;border:0}
button{background:#057a44;color:#fff;margin-bottom:12px}
.cancel{background:#fff;color:#191919}
.note{color:#4c4c4c;font-size:13px;text-align:center;margin-top:24px}
.done{text-align:center;font-size:22px;font-weight:600;color:#057a44}
"""


def page(title: str, body: str) -> str:
    return ("<!doctype html><html lang=zh-CN><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            "<link rel=icon href='data:,'>"
            f"<title>{xhtml_escape(title)}</title><style>{STYLE}</style>"
            f"<header>微信支付</header><main>{body}</main></html>")


class CashierHandler(tornado.web.RequestHandler):
    """``GET <base>?prepay_id=&redirect_url=``: the cashier page; ``POST <base>/pay``
    pays (form fields ``prepay_id``, ``redirect_url``), then returns the payer."""

    fake: Any
    merchant_id: str

    def initialize(self, fake: Any) -> None:
        self.fake = fake
        self.merchant_id = getattr(fake, "mch_id", None) or getattr(fake, "mchid", "")

    def check_xsrf_cookie(self) -> None:
        pass

    def order(self) -> Any:
        prepay_id = self.get_argument("prepay_id", "")
        found = next((o for o in self.fake.orders.values() if o.prepay_id == prepay_id), None)
        if found is None:
            raise tornado.web.HTTPError(404, "unknown prepay_id")
        return found

    def get(self) -> None:
        order = self.order()
        redirect = allowed_redirect(self.get_argument("redirect_url", ""), order.notify_url)
        if order.trade_state == "SUCCESS":
            return self.finish_paid(redirect)
        escape = xhtml_escape
        action = f"{self.request.path}/pay"
        hidden = "".join(f"<input type=hidden name={name} value='{escape(value)}'>"
                         for name, value in (("prepay_id", order.prepay_id),
                                             ("redirect_url", redirect or "")))
        description = escape(getattr(order, "description", "") or "商品")
        cancel = (f"<a class=cancel id=cancel href='{escape(redirect)}'>取消</a>" if redirect
                  else "")
        self.finish(page("微信支付", (
            f"<p class=merchant>{escape(MERCHANT)}</p>"
            f"<p class=amount id=amount><small>¥</small>{yuan(amount_of(order))}</p>"
            f"<dl><div><dt>商品</dt><dd id=description>{description}</dd></div>"
            f"<div><dt>商户号</dt><dd>{escape(self.merchant_id)}</dd></div>"
            f"<div><dt>订单号</dt><dd>{escape(order.out_trade_no)}</dd></div></dl>"
            f"<form method=post action='{escape(action)}'>{hidden}"
            "<button id=confirm>确认支付</button></form>"
            f"{cancel}<p class=note>本页为本地模拟的微信支付（开发模式），不会产生真实扣款</p>")))

    def finish_paid(self, redirect: str | None) -> None:
        if redirect:
            return self.redirect(redirect, status=303)
        self.finish(page("支付成功", (
            "<p class=done id=done>支付成功</p>"
            "<p class=note>没有可返回的商户页面（redirect_url 缺失或不在商户的域名下），"
            "请手动返回</p>")))


class CashierPayHandler(CashierHandler):
    def post(self) -> None:
        order = self.order()
        redirect = allowed_redirect(self.get_argument("redirect_url", ""), order.notify_url)
        if order.trade_state == "NOTPAY":
            self.fake.pay(order.out_trade_no)
        self.finish_paid(redirect)


def cashier_routes(base: str, fake: Any) -> list[Any]:
    """The cashier under ``base`` (``/_fake/mweb`` for v2, ``/_fake/v3/mweb`` for v3)."""
    return [(base, CashierHandler, {"fake": fake}),
            (base + "/pay", CashierPayHandler, {"fake": fake})]

