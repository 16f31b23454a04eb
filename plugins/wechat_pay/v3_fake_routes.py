"""The HTTP side of the fake WeChat Pay v3 (see v3_fake.py). Each request's
``Authorization`` is checked as WeChat checks it (401 ``SIGN_ERROR`` otherwise); every
answer is signed in the fake's ``mode``."""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import tornado.web

from kpay.core.digits import parse_digits
from plugins.wechat_pay import v3_signing

if TYPE_CHECKING:
    from plugins.wechat_pay.v3_fake import FakeWeChatV3

TRADE_TYPES = {"jsapi": "JSAPI", "h5": "MWEB", "native": "NATIVE"}


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class V3Handler(tornado.web.RequestHandler):
    fake: FakeWeChatV3

    def initialize(self, fake: FakeWeChatV3) -> None:
        self.fake = fake

    def check_xsrf_cookie(self) -> None:
        pass

    def answer(self, status: int, data: dict[str, Any] | None) -> None:
        body = b"" if data is None else json.dumps(data, ensure_ascii=False).encode()
        self.set_status(status)
        for name, value in self.fake.signed_headers(body).items():
            self.set_header(name, value)
        if status == 204:
            self.clear_header("Content-Type")
            return self.finish()  # signed over the empty body, as WeChat does
        self.finish(body)

    def checked(self) -> dict[str, Any]:
        """The request's JSON once its signature is checked; Refusal otherwise."""
        fake = self.fake
        auth = v3_signing.parse_authorization(self.request.headers.get("Authorization", ""))
        stamp = parse_digits(auth.get("timestamp"))
        if (auth.get("mchid") != fake.mchid or auth.get("serial_no") != fake.merchant_serial
                or stamp is None or abs(time.time() - stamp) > 300):
            raise Refusal(401, "SIGN_ERROR", "签名错误: Authorization 不正确")
        message = v3_signing.request_message(self.request.method or "", self.request.uri or "",
                                             auth["timestamp"], auth.get("nonce_str", ""),
                                             self.request.body or b"")
        if not v3_signing.rsa_verify(fake.merchant_key.public_key(), message,
                                     auth.get("signature", "")):
            raise Refusal(401, "SIGN_ERROR", "签名错误")
        try:
            return json.loads(self.request.body) if self.request.body else {}
        except ValueError:
            raise Refusal(400, "PARAM_ERROR", "请求体不是JSON") from None

    async def handle(self, name: str, work: Any) -> None:
        self.fake.calls[name] += 1
        try:
            status, data = work(self.checked())
        except Refusal as e:
            return self.answer(e.status, {"code": e.code, "message": e.message})
        self.answer(status, data)


class CreateHandler(V3Handler):
    async def post(self, kind: str) -> None:
        await self.handle(f"transactions/{kind}", lambda body: self.create(kind, body))

    def create(self, kind: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        fake = self.fake
        if p.get("appid") != fake.appid or p.get("mchid") != fake.mchid:
            raise Refusal(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        total = (p.get("amount") or {}).get("total")
        missing = [k for k in ("description", "out_trade_no", "notify_url") if not p.get(k)]
        missing += {"jsapi": ["payer"], "h5": ["scene_info"]}.get(kind, [])
        missing = [k for k in missing if not p.get(k)]
        if missing or not isinstance(total, int) or total <= 0:
            raise Refusal(400, "PARAM_ERROR", f"参数错误 {missing}")
        order = fake.orders.get(p["out_trade_no"])
        if order is None:
            order = fake.orders[p["out_trade_no"]] = type_order(fake, kind, p, total)
        elif order.total != total:
            raise Refusal(400, "INVALID_REQUEST", "201 商户订单号重复")
        if kind == "native":
            return 200, {"code_url": f"weixin://wxpay/bizpayurl/up?pr=fake{order.prepay_id}"}
        if kind == "h5":
            return 200, {"h5_url": f"{fake.base_url}_fake/v3/mweb?prepay_id={order.prepay_id}"}
        return 200, {"prepay_id": order.prepay_id}


def type_order(fake: FakeWeChatV3, kind: str, p: dict[str, Any], total: int) -> Any:
    from plugins.wechat_pay.v3_fake import FakeV3Order

    return FakeV3Order(p["out_trade_no"], total, TRADE_TYPES[kind], p["notify_url"],
                       openid=(p.get("payer") or {}).get("openid", ""),
                       description=str(p["description"]))


class QueryHandler(V3Handler):
    async def get(self, out_trade_no: str) -> None:
        def work(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if self.get_query_argument("mchid", "") != self.fake.mchid:
                raise Refusal(400, "PARAM_ERROR", "mchid 不正确")
            order = self.fake.orders.get(out_trade_no)
            if order is None:
                raise Refusal(404, "ORDER_NOT_EXIST", "订单不存在")
            return 200, self.fake.transaction(order)

        await self.handle("transactions/query", work)


class CloseHandler(V3Handler):
    async def post(self, out_trade_no: str) -> None:
        def work(p: dict[str, Any]) -> tuple[int, None]:
            order = self.fake.orders.get(out_trade_no)
            if p.get("mchid") != self.fake.mchid:
                raise Refusal(400, "PARAM_ERROR", "mchid 不正确")
            if order is None:
                raise Refusal(404, "ORDER_NOT_EXIST", "订单不存在")
            if order.trade_state == "SUCCESS":
                raise Refusal(400, "ORDER_PAID", "订单已支付")
            order.trade_state = "CLOSED"
            return 204, None

        await self.handle("transactions/close", work)


class RefundHandler(V3Handler):
    async def post(self) -> None:
        await self.handle("refunds", self.refund)

    def refund(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        fake = self.fake
        order = fake.orders.get(p.get("out_trade_no", ""))
        amount = (p.get("amount") or {}).get("refund")
        if order is None or order.trade_state not in ("SUCCESS", "REFUND"):
            raise Refusal(404, "RESOURCE_NOT_EXISTS", "订单不存在或未支付")
        if not isinstance(amount, int) or amount <= 0:
            raise Refusal(400, "PARAM_ERROR", "退款金额不正确")
        number = p.get("out_refund_no", "")
        refund = fake.refunds.get(number)
        if refund is None:
            if order.refunded + amount > order.total:
                raise Refusal(403, "NOT_ENOUGH", "退款金额超过订单可退金额")
            order.refunded += amount
            order.trade_state = "REFUND"
            refund = fake.refunds[number] = {
                "refund_id": "5030" + secrets.token_hex(12), "out_trade_no": order.out_trade_no,
                "amount": amount, "notify_url": p.get("notify_url", ""), "at": fake.now()}
        if fake.lose_refund_answers > 0:  # processed, but the answer is lost
            fake.lose_refund_answers -= 1
            raise Refusal(500, "SYSTEM_ERROR", "系统错误")
        return 200, {"refund_id": refund["refund_id"], "out_refund_no": number,
                     "out_trade_no": order.out_trade_no, "status": "PROCESSING",
                     "amount": {"total": order.total, "refund": refund["amount"],
                                "currency": "CNY"}}


class DemoPayHandler(V3Handler):
    """``POST /_fake/v3/pay?out_trade_no=``: the payer pays (demo pages, curl)."""

    def post(self) -> None:
        number = self.get_query_argument("out_trade_no", "")
        if number not in self.fake.orders:
            raise tornado.web.HTTPError(404)
        self.fake.pay(number)
        self.finish({"paid": number})


ROUTES = [
    (r"/v3/pay/transactions/(jsapi|h5|native)", CreateHandler),
    (r"/v3/pay/transactions/out-trade-no/([A-Za-z0-9_\-|*@]+)", QueryHandler),
    (r"/v3/pay/transactions/out-trade-no/([A-Za-z0-9_\-|*@]+)/close", CloseHandler),
    (r"/v3/refund/domestic/refunds", RefundHandler),
    (r"/_fake/v3/pay", DemoPayHandler),
]
