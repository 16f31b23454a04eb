"""The WeChat Pay v2 payment provider: unifiedorder, orderquery, closeorder, refund.

It only talks to WeChat and reports what it found; the order state machine and every
money movement stay in the core (``app.money.orders``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from wechatpy.exceptions import WeChatPayException
from wechatpy.utils import random_string

from kpay.core.digits import parse_digits
from kpay.core.errors import BadRequest, PaymentProviderError
from kpay.core.money.providers import (
    NotifyAnswer,
    NotifyRefused,
    NotifyVerdict,
    PaymentProvider,
    PaymentState,
    ProviderCapabilities,
    RefundState,
    RequestInfo,
)
from plugins.wechat_pay import notify, signing
from plugins.wechat_pay.client import URL_NAME, UntrustedAnswer
from plugins.wechat_pay.signing import MD5, XmlError, decrypt_req_info, parse_xml, sign, verify

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from plugins.wechat_pay.client import WeChatRuntime

log = logging.getLogger("kpay.wechat_pay")

IDENTIFIER = "wechat_pay"
# WeChat Pay reads times as Beijing time (no DST).
CHINA = timezone(timedelta(hours=8))
TRADE_TYPES = {"jsapi": "JSAPI", "mweb": "MWEB", "native": "NATIVE"}
PAID_STATES = ("SUCCESS", "REFUND")
CLOSED_STATES = ("CLOSED", "REVOKED")
XML_TYPE = "text/xml; charset=utf-8"
# Network failures while refunding: retry with the same out_refund_no (WeChat refunds
# one out_refund_no once, so a retry after a lost answer cannot refund twice).
REFUND_ATTEMPTS = 3
RETRY_CODES = ("SYSTEMERROR", "BIZERR_NEED_RETRY")
# What WeChat Pay accepts as out_refund_no; other refund ids are hashed into one.
OUT_REFUND_NO = re.compile(r"^[A-Za-z0-9_\-|*@]{1,64}$")
# A refund notify's refund_status, in the core's words (CHANGE: the card was closed,
# REFUNDCLOSE: closed; the money did not reach the payer either way).
REFUND_STATES = {"SUCCESS": "succeeded", "CHANGE": "failed", "REFUNDCLOSE": "failed"}
# What a notify said that its record keeps, even when it is refused.
NOTIFY_FACTS = ("out_trade_no", "transaction_id")


def refused(reason: str, message: str, params: dict[str, str] | None = None) -> NotifyRefused:
    """The core's refusal, with what the notify said of the order."""
    return NotifyRefused(reason, message,
                         {k: (params or {})[k] for k in NOTIFY_FACTS if k in (params or {})})


async def payer_openid(app: KPay, order: dict[str, Any], request: RequestInfo) -> str:
    """The JSAPI payer's openid: sent with the order, or kept from the WeChat login;
    400 ``openid_required`` without one (v2 and v3 alike)."""
    openid = request.openid or await app.users.openid(order["user_id"])
    if not openid:
        raise BadRequest(
            "jsapi payment needs the payer's openid: log in through WeChat OAuth "
            "(/api/v1/wechat/oauth/start) or send \"openid\" with the order",
            code="openid_required", field="openid")
    return openid


class RefundOutcomeUnknown(Exception):
    """No trustworthy answer to a refund request: it may or may not have been paid out.
    Not a PaymentProviderError, so the core keeps the refund pending (see
    ``PaymentProvider.refund``)."""


def describe(error: WeChatPayException) -> str:
    return (f"WeChat Pay: {error.errcode or error.result_code or error.return_code} "
            f"{error.errmsg or error.return_msg or ''}").strip()


class WeChatPayProvider(PaymentProvider):
    identifier = IDENTIFIER
    verbose_name = "WeChat Pay (API v2)"
    channels = ("native", "mweb", "jsapi")
    # Today's URLs: /api/v1/pay/wechat/notify and /api/v1/pay/wechat/refund-notify.
    url_name = URL_NAME
    capabilities = ProviderCapabilities(refunds=True, partial_refunds=True, payouts=False)
    # WeChat Pay refuses closeorder within 5 minutes of creation.
    settle_after = timedelta(minutes=5)
    notify_media_type = "text/xml"
    notify_body = notify.PayNotifyXml
    refund_notify_body = notify.RefundNotifyXml

    def __init__(self, runtime: WeChatRuntime) -> None:
        self.runtime = runtime

    # -- paying -------------------------------------------------------------------------

    async def create_payment(self, order: dict[str, Any], request: RequestInfo) -> dict[str, Any]:
        channel = order["channel"]
        openid = None
        if channel == "jsapi":
            openid = await payer_openid(self.runtime.app, order, request)
        s = self.runtime.settings
        # WeChat judges time_start/time_expire on real time: the wall clock on purpose,
        # not the app's (which a dev or test clock may have moved).
        now = datetime.now(CHINA)
        expiry = timedelta(seconds=self.runtime.app.settings.money.order_expiry_seconds)
        data = await self._pay_call(lambda: self.runtime.pay.order.create(
            trade_type=TRADE_TYPES[channel], body=order["title"][:128],
            total_fee=order["amount"], notify_url=self.runtime.notify_url(),
            client_ip=request.client_ip, user_id=openid, out_trade_no=order["out_trade_no"],
            time_start=now, time_expire=now + expiry, device_info="WEB",
            product_id=order["_id"] if channel == "native" else None,
            scene_info=self._scene_info() if channel == "mweb" else None,
            **({"sign_type": s.sign_type} if s.sign_type != "MD5" else {})))
        if channel == "native":
            return {"code_url": data.get("code_url", "")}
        if channel == "mweb":
            return {"mweb_url": data.get("mweb_url", "")}
        return self.jsapi_params(data["prepay_id"])

    def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        """The WeixinJSBridge ``getBrandWCPayRequest`` parameters, signed with the same
        sign type as the unifiedorder call (WeChat requires them to match)."""
        s = self.runtime.settings
        # WeChat's client checks timeStamp against real time: the wall clock on purpose.
        params = {"appId": s.appid, "timeStamp": str(int(time.time())),
                  "nonceStr": random_string(32), "package": f"prepay_id={prepay_id}",
                  "signType": s.sign_type}
        params["paySign"] = sign(params, s.api_key, s.sign_type)
        return params

    def _scene_info(self) -> dict[str, Any]:
        s = self.runtime.settings
        url = s.h5_site_url or self.runtime.public_url("/")
        return {"h5_info": {"type": "Wap", "wap_url": url, "wap_name": s.h5_site_name}}

    # -- notifies -----------------------------------------------------------------------

    async def handle_notify(self, body: bytes, headers: Mapping[str, str]) -> PaymentState:
        """Verify a payment notify: safe XML, the signature (MD5, or HMAC-SHA256 when
        declared or configured; constant time), appid and mch_id. Raises NotifyRefused.
        A failed payment (``result_code`` FAIL) is reported ``pending``."""
        params = self._parse(body)
        s = self.runtime.settings
        accepted = tuple(dict.fromkeys((MD5, s.sign_type)))
        # The signature first: nothing unsigned is looked at further.
        if not verify(params, s.api_key, accepted):
            raise refused("bad_signature", "signature does not match", params)
        self._check_merchant(params)
        out_trade_no = params.get("out_trade_no", "")
        if params.get("result_code") != "SUCCESS":
            return PaymentState("pending", raw=params, out_trade_no=out_trade_no)
        fee = parse_digits(params.get("total_fee"))
        if fee is None:
            raise refused("amount_mismatch",
                          f"total_fee {params.get('total_fee')!r} is not fen", params)
        return PaymentState("paid", fee, params.get("transaction_id", ""), params,
                            out_trade_no)

    async def handle_refund_notify(self, body: bytes, headers: Mapping[str, str]) -> RefundState:
        """Decrypt a refund notify's ``req_info`` (AES-256-ECB keyed with md5(api_key);
        there is no signature: only the api_key's holder can encrypt it)."""
        params = self._parse(body)
        self._check_merchant(params)
        try:
            info = decrypt_req_info(params.get("req_info", ""), self.runtime.settings.api_key)
        except XmlError as e:
            raise refused("bad_req_info", str(e), params) from None
        fee = parse_digits(info.get("refund_fee"))
        if fee is None:
            raise refused("amount_mismatch",
                          f"refund_fee {info.get('refund_fee')!r} is not fen", info)
        status = info.get("refund_status", "")
        return RefundState(REFUND_STATES.get(status, "pending"), info.get("out_refund_no", ""),
                           fee, provider_status=status,
                           refund_id=info.get("refund_id", ""),
                           out_trade_no=info.get("out_trade_no", ""), raw=info)

    def notify_answer(self, verdict: NotifyVerdict) -> NotifyAnswer:
        """WeChat reads only ``return_code``: SUCCESS stops its resending; FAIL (400 for
        a refusal, 500 for our own failure) makes it send again later."""
        if verdict.outcome in ("accepted", "duplicate"):
            return NotifyAnswer(200, XML_TYPE, signing.SUCCESS_XML.encode())
        if verdict.outcome == "error":
            return NotifyAnswer(500, XML_TYPE, signing.fail_xml("internal error").encode())
        return NotifyAnswer(400, XML_TYPE, signing.fail_xml(verdict.message or
                                                            verdict.reason).encode())

    async def record_notify(self, verdict: NotifyVerdict) -> None:
        await notify.save(self.runtime, verdict)

    def refund_number(self, refund_id: str) -> str:
        """WeChat's ``out_refund_no`` (at most 64 of letters, digits and ``_-|*@``):
        the id itself, or a stable hash of it (the numbers refunds always had)."""
        if OUT_REFUND_NO.match(refund_id):
            return refund_id
        return "r" + hashlib.sha256(refund_id.encode()).hexdigest()[:31]

    def _parse(self, body: bytes) -> dict[str, str]:
        try:
            return parse_xml(body)
        except XmlError as e:
            raise refused("bad_xml", str(e)) from None

    def _check_merchant(self, params: dict[str, str]) -> None:
        s = self.runtime.settings
        if params.get("return_code") != "SUCCESS":
            raise refused("not_success", f"return_code {params.get('return_code')!r}",
                          params)
        if params.get("appid") != s.appid:
            raise refused("wrong_appid", "appid does not match", params)
        if params.get("mch_id") != s.mch_id:
            raise refused("wrong_mch_id", "mch_id does not match", params)

    # -- reconciliation -----------------------------------------------------------------

    async def query(self, order: dict[str, Any]) -> PaymentState:
        try:
            data = await self._pay_call(lambda: self._signed_post(
                "pay/orderquery", {"out_trade_no": order["out_trade_no"]}))
        except PaymentProviderError as e:
            if e.details.get("err_code") == "ORDERNOTEXIST":
                return PaymentState("unknown")
            raise
        if data.get("out_trade_no") != order["out_trade_no"]:
            raise PaymentProviderError("WeChat Pay answered about another order")
        state = data.get("trade_state", "")
        if state in PAID_STATES:
            fee = parse_digits(data.get("total_fee"))
            if fee is None:
                raise PaymentProviderError("WeChat Pay answered a total_fee that is not fen")
            return PaymentState("paid", fee, data.get("transaction_id", ""), data)
        if state in CLOSED_STATES:
            return PaymentState("closed", raw=data)
        return PaymentState("pending", raw=data)

    async def close(self, order: dict[str, Any]) -> None:
        try:
            await self._pay_call(lambda: self._signed_post(
                "pay/closeorder", {"out_trade_no": order["out_trade_no"]}))
        except PaymentProviderError as e:
            if e.details.get("err_code") in ("ORDERCLOSED", "ORDERNOTEXIST"):
                return
            # ORDERPAID and the rest: do not close here; the next query books the payment.
            raise

    # -- refunds ------------------------------------------------------------------------

    async def refund(self, order: dict[str, Any], refund: dict[str, Any]) -> dict[str, Any]:
        s = self.runtime.settings
        for key in ("mch_cert", "mch_key"):
            if key in self.runtime.problems:
                raise PaymentProviderError(
                    "refunds need the merchant certificate: " + self.runtime.problems[key])
        if not (s.mch_cert and s.mch_key) and not self.runtime.effective.uses_fake:
            raise PaymentProviderError("refunds need [wechat_pay] mch_cert and mch_key")
        data = {"out_trade_no": order["out_trade_no"], "out_refund_no": refund["out_refund_no"],
                "total_fee": order["amount"], "refund_fee": refund["amount"],
                "refund_fee_type": "CNY", "refund_desc": str(refund.get("reason", ""))[:80],
                "notify_url": self.runtime.refund_notify_url()}
        last: Exception | None = None
        for attempt in range(REFUND_ATTEMPTS):
            try:
                answer = await self.runtime.call(
                    lambda: self._signed_post("secapi/pay/refund", dict(data)))
            except UntrustedAnswer as e:
                last = e
            except WeChatPayException as e:
                if e.return_code is not None and e.errcode not in RETRY_CODES:
                    raise PaymentProviderError(describe(e)) from None  # refused: nothing paid
                last = e  # no answer (5xx) or "try again"
            except OSError as e:  # requests' ConnectionError and Timeout are OSErrors
                last = e
            else:
                if parse_digits(answer.get("refund_fee")) != refund["amount"]:
                    raise RefundOutcomeUnknown("WeChat Pay answered another refund amount")
                return {"refund_id": answer.get("refund_id", ""), "attempts": attempt + 1}
            log.warning("refund %s attempt %d: %s", refund["out_refund_no"], attempt + 1, last)
        # WeChat may have refunded: the core keeps the refund pending, and a retry with
        # the same key sends the same out_refund_no, which WeChat refunds at most once.
        raise RefundOutcomeUnknown(f"WeChat Pay refund outcome unknown: {last}")

    # -- plumbing -----------------------------------------------------------------------

    def _signed_post(self, endpoint: str, data: dict[str, Any]) -> dict[str, str]:
        """Blocking: call only through ``runtime.call``."""
        s = self.runtime.settings
        data = {"appid": s.appid, **data}
        if s.sign_type != "MD5":
            data["sign_type"] = s.sign_type
        return self.runtime.pay.post(endpoint, data=data)

    async def _pay_call(self, blocking: Callable[[], dict[str, str]]) -> dict[str, str]:
        """Run a blocking call in the pool; every failure becomes PaymentProviderError
        (with WeChat's ``err_code``), which the core handles (nothing is booked)."""
        try:
            return await self.runtime.call(blocking)
        except WeChatPayException as e:
            raise PaymentProviderError(describe(e), err_code=e.errcode or "") from None
        except OSError as e:
            raise PaymentProviderError(f"WeChat Pay did not answer: {e}") from None
