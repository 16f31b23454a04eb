"""The HTTP side of the fake WeChat (see fake.py): the pay API v2 endpoints, OAuth, the
JS-SDK back end, a demo pay route and the H5 cashier (fake_cashier.py). Each request is
checked as WeChat checks it."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import tornado.escape
import tornado.web

from kpay.core.digits import parse_digits
from plugins.wechat_pay import signing
from plugins.wechat_pay.fake_cashier import cashier_routes

if TYPE_CHECKING:
    from plugins.wechat_pay.fake import FakeWeChat


class FakeHandler(tornado.web.RequestHandler):
    fake: FakeWeChat

    def initialize(self, fake: FakeWeChat) -> None:
        self.fake = fake

    def check_xsrf_cookie(self) -> None:
        pass


class PayApiHandler(FakeHandler):
    """Every pay API endpoint: check the request like WeChat, then answer signed XML."""

    def post(self, endpoint: str) -> None:
        fake = self.fake
        fake.calls[endpoint] += 1
        try:
            params = signing.parse_xml(self.request.body)
        except signing.XmlError as e:
            return self.answer_fail(f"XML格式错误: {e}")
        if not signing.verify(params, fake.api_key):
            return self.answer_fail("签名错误")
        if params.get("appid") != fake.appid or params.get("mch_id") != fake.mch_id:
            return self.answer_fail("appid和mch_id不匹配")
        if endpoint.startswith("secapi/") and fake.ssl_context is not None:
            if not self.request.get_ssl_certificate():
                return self.answer_fail("证书错误: 请求需要双向证书")
        handler = ENDPOINTS.get(endpoint)
        if handler is None:
            self.set_status(404)
            return self.answer_fail("not found")
        result = handler(fake, params)
        if endpoint == "secapi/pay/refund" and fake.lose_refund_answers > 0:
            fake.lose_refund_answers -= 1
            self.set_status(500)
            return self.finish("lost")
        sign_type = params.get("sign_type", signing.MD5)
        answer = {"return_code": "SUCCESS", "return_msg": "OK", "appid": fake.appid,
                  "mch_id": fake.mch_id, "nonce_str": secrets.token_hex(16), **result}
        self.set_header("Content-Type", "text/xml; charset=utf-8")
        # Like WeChat: signed as the request was, with no sign_type field in the answer.
        self.finish(signing.signed_xml(answer, fake.api_key, sign_type, declare=False))

    def answer_fail(self, message: str) -> None:
        self.set_header("Content-Type", "text/xml; charset=utf-8")
        self.finish(signing.fail_xml(message))


def _error(code: str, text: str) -> dict[str, Any]:
    return {"result_code": "FAIL", "err_code": code, "err_code_des": text}


def unifiedorder(fake: FakeWeChat, p: dict[str, str]) -> dict[str, Any]:
    trade_type = p.get("trade_type", "")
    required = ["body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url"]
    required += {"JSAPI": ["openid"], "NATIVE": ["product_id"], "MWEB": ["scene_info"]}.get(
        trade_type, [])
    missing = [k for k in required if not p.get(k)]
    if trade_type not in ("JSAPI", "NATIVE", "MWEB") or missing:
        return _error("PARAM_ERROR", f"参数错误 {trade_type} {missing}")
    total_fee = parse_digits(p["total_fee"])
    if not total_fee:
        return _error("PARAM_ERROR", "total_fee")
    existing = fake.orders.get(p["out_trade_no"])
    if existing is not None:
        if existing.trade_state == "SUCCESS":
            return _error("ORDERPAID", "该订单已支付")
        if existing.total_fee != total_fee or existing.trade_type != trade_type:
            return _error("INVALID_REQUEST", "201 商户订单号重复")
        order = existing
    else:
        from plugins.wechat_pay.fake import FakeOrder

        order = FakeOrder(p["out_trade_no"], total_fee, trade_type, p["notify_url"],
                          p.get("openid", ""), sign_type=p.get("sign_type", signing.MD5),
                          description=p["body"])
        fake.orders[order.out_trade_no] = order
    result = {"result_code": "SUCCESS", "trade_type": trade_type, "prepay_id": order.prepay_id}
    if trade_type == "NATIVE":
        result["code_url"] = f"weixin://wxpay/bizpayurl?pr={order.prepay_id[-10:]}"
    if trade_type == "MWEB":
        result["mweb_url"] = (f"{fake.base_url}_fake/mweb?"
                              + urlencode({"prepay_id": order.prepay_id, "package": "1"}))
    return result


def orderquery(fake: FakeWeChat, p: dict[str, str]) -> dict[str, Any]:
    order = fake.orders.get(p.get("out_trade_no", ""))
    if order is None:
        return _error("ORDERNOTEXIST", "订单不存在")
    state = "REFUND" if order.refunded else order.trade_state
    return {"result_code": "SUCCESS", "trade_state": state, "out_trade_no": order.out_trade_no,
            "total_fee": order.total_fee, "transaction_id": order.transaction_id,
            "trade_type": order.trade_type, "openid": order.openid}


def closeorder(fake: FakeWeChat, p: dict[str, str]) -> dict[str, Any]:
    order = fake.orders.get(p.get("out_trade_no", ""))
    if order is None:
        return _error("ORDERNOTEXIST", "订单不存在")
    if order.trade_state == "SUCCESS":
        return _error("ORDERPAID", "订单已支付")
    order.trade_state = "CLOSED"
    return {"result_code": "SUCCESS"}


def refund(fake: FakeWeChat, p: dict[str, str]) -> dict[str, Any]:
    order = fake.orders.get(p.get("out_trade_no", ""))
    if order is None or order.trade_state != "SUCCESS":
        return _error("ORDERNOTEXIST", "订单不存在或未支付")
    out_refund_no = p.get("out_refund_no", "")
    fee = parse_digits(p.get("refund_fee"))
    if not out_refund_no or not fee or parse_digits(p.get("total_fee")) != order.total_fee:
        return _error("PARAM_ERROR", "参数错误")
    done = fake.refunds.get(out_refund_no)
    if done is None:  # the same out_refund_no refunds once, however often it is sent
        if order.refunded + fee > order.total_fee:
            return _error("NOTENOUGH", "退款金额大于可退金额")
        order.refunded += fee
        done = {"out_trade_no": order.out_trade_no, "refund_fee": fee,
                "refund_id": "5030" + secrets.token_hex(12), "notify_url": p.get("notify_url")}
        fake.refunds[out_refund_no] = done
        if done["notify_url"]:
            fake.send(done["notify_url"], fake.refund_notify(out_refund_no))
    elif done["refund_fee"] != fee or done["out_trade_no"] != order.out_trade_no:
        return _error("INVALID_REQUEST", "同一退款单号参数不一致")
    return {"result_code": "SUCCESS", "out_trade_no": order.out_trade_no,
            "transaction_id": order.transaction_id, "out_refund_no": out_refund_no,
            "refund_id": done["refund_id"], "refund_fee": fee, "total_fee": order.total_fee,
            "cash_fee": order.total_fee}


ENDPOINTS = {"pay/unifiedorder": unifiedorder, "pay/orderquery": orderquery,
             "pay/closeorder": closeorder, "secapi/pay/refund": refund}


class JsonHandler(FakeHandler):
    def reply(self, data: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(data, ensure_ascii=False))

    def error(self, code: int, message: str) -> None:
        self.reply({"errcode": code, "errmsg": message})


class AuthorizeHandler(FakeHandler):
    """The page WeChat shows: here the user agrees at once and is sent back with a code."""

    def get(self) -> None:
        fake = self.fake
        fake.calls["connect/oauth2/authorize"] += 1
        if self.get_query_argument("appid", "") != fake.appid:
            raise tornado.web.HTTPError(400, "appid 错误")
        redirect = self.get_query_argument("redirect_uri")
        code = secrets.token_hex(16)
        fake.codes[code] = {"scope": self.get_query_argument("scope", "snsapi_base")}
        parts = urlsplit(redirect)
        query = "&".join(q for q in (parts.query, urlencode(
            {"code": code, "state": self.get_query_argument("state", "")})) if q)
        self.redirect(urlunsplit(parts._replace(query=query)))


class OAuthTokenHandler(JsonHandler):
    def get(self) -> None:
        fake = self.fake
        fake.calls["sns/oauth2/access_token"] += 1
        if (self.get_query_argument("appid", "") != fake.appid
                or self.get_query_argument("secret", "") != fake.app_secret):
            return self.error(40125, "invalid appsecret")
        grant = fake.codes.pop(self.get_query_argument("code", ""), None)  # codes are single-use
        if grant is None:
            return self.error(40029, "invalid code")
        token = "sns-" + secrets.token_hex(12)
        fake.tokens[token] = fake.oauth_user["openid"]
        self.reply({"access_token": token, "expires_in": 7200, "refresh_token": "r" + token,
                    "openid": fake.oauth_user["openid"], "scope": grant["scope"]})


class UserInfoHandler(JsonHandler):
    def get(self) -> None:
        self.fake.calls["sns/userinfo"] += 1
        openid = self.fake.tokens.get(self.get_query_argument("access_token", ""))
        if openid is None or openid != self.get_query_argument("openid", ""):
            return self.error(40001, "invalid credential")
        self.reply({**self.fake.oauth_user, "headimgurl": "", "privilege": []})


class AccessTokenHandler(JsonHandler):
    def get(self) -> None:
        fake = self.fake
        fake.calls["cgi-bin/token"] += 1
        if (self.get_query_argument("appid", "") != fake.appid
                or self.get_query_argument("secret", "") != fake.app_secret):
            return self.error(40125, "invalid appsecret")
        token = "cgi-" + secrets.token_hex(12)
        fake.tokens[token] = "client"
        self.reply({"access_token": token, "expires_in": 7200})


class TicketHandler(JsonHandler):
    def get(self) -> None:
        self.fake.calls["cgi-bin/ticket/getticket"] += 1
        if self.fake.tokens.get(self.get_query_argument("access_token", "")) != "client":
            return self.error(40001, "invalid credential")
        self.reply({"errcode": 0, "errmsg": "ok", "ticket": self.fake.ticket, "expires_in": 7200})


class DemoPayHandler(FakeHandler):
    """``POST /_fake/pay?out_trade_no=``: the payer pays (demos, manual tests)."""

    def post(self) -> None:
        out_trade_no = self.get_query_argument("out_trade_no", "")
        if out_trade_no not in self.fake.orders:
            raise tornado.web.HTTPError(404, "unknown out_trade_no")
        self.fake.pay(out_trade_no)
        self.finish({"paid": out_trade_no})


def routes(fake: FakeWeChat) -> list[Any]:
    args = {"fake": fake}
    return [
        (r"/((?:pay|secapi/pay)/\w+)", PayApiHandler, args),
        (r"/connect/oauth2/authorize", AuthorizeHandler, args),
        (r"/sns/oauth2/access_token", OAuthTokenHandler, args),
        (r"/sns/userinfo", UserInfoHandler, args),
        (r"/cgi-bin/token", AccessTokenHandler, args),
        (r"/cgi-bin/ticket/getticket", TicketHandler, args),
        (r"/_fake/pay", DemoPayHandler, args),
        # Where an mweb_url leads: the cashier, back to redirect_url after paying.
        *cashier_routes(r"/_fake/mweb", fake),
    ]
