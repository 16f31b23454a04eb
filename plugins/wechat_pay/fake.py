"""A local fake of WeChat's servers, for tests and ``make run`` demos.

It checks request signatures exactly as WeChat Pay does (MD5 or HMAC-SHA256 over the
sorted non-empty parameters + ``&key=``), answers signed XML, and serves:

- pay API v2: ``pay/unifiedorder``, ``pay/orderquery``, ``pay/closeorder``,
  ``secapi/pay/refund`` (with TLS on, refunds require a verified client certificate,
  as WeChat does);
- result notifies to the merchant's notify_url with WeChat's retry pattern (until the
  answer is SUCCESS; intervals 15s/15s/30s/3m/10m/20m/30m/... times ``retry_scale``),
  and encrypted refund notifies;
- OAuth (``connect/oauth2/authorize``, ``sns/oauth2/access_token``, ``sns/userinfo``) and
  the JS-SDK back end (``cgi-bin/token``, ``cgi-bin/ticket/getticket``);
- ``POST /_fake/pay?out_trade_no=`` to "pay" an order from a demo page or curl, and the
  H5 cashier an ``mweb_url`` leads to (fake_cashier.py).

Counters in ``calls`` (per endpoint) let tests check what reached it. The HTTP
handlers are in fake_routes.py.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import tornado.escape
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web

from plugins.wechat_pay import signing

log = logging.getLogger("kpay.wechat_pay.fake")

# WeChat's documented notify retry schedule (seconds between attempts).
RETRY_INTERVALS = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800,
                   21600, 21600)
CHINA = timezone(timedelta(hours=8))


def wechat_time() -> str:
    return datetime.now(CHINA).strftime("%Y%m%d%H%M%S")


def serve_locally(handlers: list[Any], port: int = 0, ssl_options: Any = None
                  ) -> tuple[tornado.httpserver.HTTPServer, int]:
    """A local fake's HTTP server on 127.0.0.1 (``port`` 0: any free one) and its port."""
    server = tornado.httpserver.HTTPServer(tornado.web.Application(handlers),
                                           ssl_options=ssl_options)
    sockets = tornado.netutil.bind_sockets(port, "127.0.0.1")
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


@dataclass
class FakeOrder:
    out_trade_no: str
    total_fee: int
    trade_type: str
    notify_url: str
    openid: str = ""
    prepay_id: str = field(default_factory=lambda: "wx" + secrets.token_hex(14))
    trade_state: str = "NOTPAY"
    transaction_id: str = ""
    sign_type: str = signing.MD5
    refunded: int = 0
    description: str = ""  # the order's body, shown by the H5 cashier


@dataclass
class Delivery:
    """One notify being delivered: every attempt's HTTP status and answer."""

    url: str
    body: str
    attempts: list[tuple[int, str]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    succeeded: bool = False


class FakeWeChat:
    def __init__(self, *, appid: str = "wxfake0000000001", mch_id: str = "1900000109",
                 api_key: str | None = None, app_secret: str | None = None,
                 retry_scale: float = 1.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.appid = appid
        self.mch_id = mch_id
        self.api_key = api_key or secrets.token_hex(16)
        self.app_secret = app_secret or secrets.token_hex(16)
        self.retry_scale = retry_scale
        self.ssl_context = ssl_context
        self.orders: dict[str, FakeOrder] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.deliveries: list[Delivery] = []
        # Faults to inject: refund requests processed but answered with HTTP 500.
        self.lose_refund_answers = 0
        # The WeChat user who "logs in" through OAuth.
        self.oauth_user = {"openid": "o-fake-" + secrets.token_hex(6), "nickname": "微信用户"}
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}
        self.ticket = "fake-ticket-" + secrets.token_hex(8)
        self.server: tornado.httpserver.HTTPServer | None = None
        self.port = 0
        self._tasks: set[asyncio.Task] = set()

    # -- running ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}/"

    def credentials(self) -> dict[str, str]:
        """What kpay's [wechat_pay] section needs to talk to this fake."""
        return {"base_url": self.base_url, "appid": self.appid, "mch_id": self.mch_id,
                "api_key": self.api_key, "app_secret": self.app_secret}

    def settings(self, sign_type: str = signing.MD5) -> dict[str, Any]:
        """A ``[wechat_pay]`` override pointing kpay at this fake."""
        base = self.base_url
        return {"appid": self.appid, "mch_id": self.mch_id, "api_key": self.api_key,
                "app_secret": self.app_secret, "api_base_url": base,
                "oauth_api_base_url": base, "oauth_base_url": base, "sign_type": sign_type}

    async def start(self, port: int = 0) -> int:
        from plugins.wechat_pay.fake_routes import routes

        self.server, self.port = serve_locally(routes(self), port, self.ssl_context)
        return self.port

    async def stop(self) -> None:
        for task in tuple(self._tasks):
            task.cancel()
        if self.server is not None:
            self.server.stop()

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- what a payer and WeChat do ----------------------------------------------------------

    def pay(self, out_trade_no: str) -> Delivery:
        """The payer pays: the order becomes SUCCESS and its notify is sent (with retries)."""
        order = self.orders[out_trade_no]
        if order.trade_state == "NOTPAY":
            order.trade_state = "SUCCESS"
            order.transaction_id = "4200" + secrets.token_hex(12)
        return self.send(order.notify_url, self.payment_notify(out_trade_no))

    def payment_notify(self, out_trade_no: str, /, **changes: Any) -> str:
        """The signed notify XML WeChat sends for a paid order; ``changes`` are applied
        before signing (``sign=...`` after), so tests can build bad ones."""
        order = self.orders[out_trade_no]
        params: dict[str, Any] = {
            "appid": self.appid, "mch_id": self.mch_id, "nonce_str": secrets.token_hex(16),
            "result_code": "SUCCESS", "return_code": "SUCCESS", "openid": order.openid or "o-x",
            "is_subscribe": "N", "trade_type": order.trade_type, "bank_type": "OTHERS",
            "total_fee": order.total_fee, "cash_fee": order.total_fee, "fee_type": "CNY",
            "transaction_id": order.transaction_id or "4200" + secrets.token_hex(12),
            "out_trade_no": out_trade_no, "time_end": wechat_time()}
        forced_sign = changes.pop("sign", None)
        params.update(changes)
        params = {k: v for k, v in params.items() if v is not None}
        if order.sign_type != signing.MD5:
            params["sign_type"] = order.sign_type
        params["sign"] = forced_sign or signing.sign(params, self.api_key, order.sign_type)
        return signing.to_xml(params)

    def refund_notify(self, out_refund_no: str) -> str:
        refund = self.refunds[out_refund_no]
        order = self.orders[refund["out_trade_no"]]
        info = {"transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
                "refund_id": refund["refund_id"], "out_refund_no": out_refund_no,
                "total_fee": order.total_fee, "refund_fee": refund["refund_fee"],
                "settlement_refund_fee": refund["refund_fee"], "refund_status": "SUCCESS",
                "success_time": datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                "refund_recv_accout": "支付用户的零钱",
                "refund_account": "REFUND_SOURCE_RECHARGE_FUNDS",
                "refund_request_source": "API"}
        return signing.to_xml({"return_code": "SUCCESS", "appid": self.appid,
                               "mch_id": self.mch_id, "nonce_str": secrets.token_hex(16),
                               "req_info": signing.encrypt_req_info(info, self.api_key)})

    def send(self, url: str, body: str, retry: bool = True) -> Delivery:
        """Post a notify to ``url``; with ``retry``, again on WeChat's schedule until the
        answer is SUCCESS."""
        delivery = Delivery(url, body)
        self.deliveries.append(delivery)
        self._spawn(self._deliver(delivery, RETRY_INTERVALS if retry else ()))
        return delivery

    async def _deliver(self, delivery: Delivery, intervals: tuple[int, ...]) -> None:
        client = tornado.httpclient.AsyncHTTPClient()
        try:
            for wait in (0, *intervals):
                await asyncio.sleep(wait * self.retry_scale)
                response = await client.fetch(delivery.url, method="POST", body=delivery.body,
                                              headers={"Content-Type": "text/xml"},
                                              raise_error=False, request_timeout=10)
                text = (response.body or b"").decode("utf-8", "replace")
                delivery.attempts.append((response.code, text))
                try:
                    answer = signing.parse_xml(text)
                except signing.XmlError:
                    continue
                if answer.get("return_code") == "SUCCESS":
                    delivery.succeeded = True
                    return
        finally:
            delivery.done.set()
