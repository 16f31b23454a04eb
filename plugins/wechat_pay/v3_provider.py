"""The WeChat Pay API v3 payment provider: JSAPI, H5 and Native orders, query, close,
refunds, and the payment and refund callbacks (``/api/v1/pay/wechat-v3/...``); its
payouts (商家转账) are in v3_transfers.py.

As the v2 provider, it only talks to WeChat and reports what it found; the core books
(exactly once) and keeps the order state machine. Callbacks are believed only after:
the signature (by ``Wechatpay-Serial``: the 微信支付公钥 or a 平台证书) over
``timestamp\\nnonce\\nbody\\n`` of the raw body, a timestamp within 5 minutes of real
time, the AES-256-GCM ``resource`` decrypting with the APIv3 key, and appid/mchid.
A notification ``id`` seen (and answered SUCCESS) before is answered from what was
booked then, without decrypting or booking again (``wechat_v3_notify_ids``, TTL).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from kpay.core.digits import parse_digits
from kpay.core.errors import PaymentProviderError
from kpay.core.money.providers import (
    NotifyVerdict,
    PaymentProvider,
    PaymentState,
    ProviderCapabilities,
    RefundState,
    RequestInfo,
)
from kpay.core.store import IndexSpec
from plugins.wechat_pay import notify, v3_signing
from plugins.wechat_pay.provider import (
    CHINA,
    RefundOutcomeUnknown,
    WeChatPayProvider,
    payer_openid,
    refused,
)
from plugins.wechat_pay.v3_client import URL_NAME, V3NoAnswer, V3Refused
from plugins.wechat_pay.v3_signing import V3SignatureError
from plugins.wechat_pay.v3_transfers import MerchantTransfers

if TYPE_CHECKING:
    from plugins.wechat_pay.v3_client import V3Merchant, V3Runtime

log = logging.getLogger("kpay.wechat_pay.v3")

IDENTIFIER = "wechat_pay_v3"
PATHS = {"jsapi": "v3/pay/transactions/jsapi", "mweb": "v3/pay/transactions/h5",
         "native": "v3/pay/transactions/native"}
PAID_STATES = ("SUCCESS", "REFUND")
CLOSED_STATES = ("CLOSED", "REVOKED")
# A callback's Wechatpay-Timestamp may be this far from real time (replays older than
# this are refused; WeChat's own SDKs use the same window).
NOTIFY_WINDOW_SECONDS = 300
# Notification ids answered SUCCESS, kept for de-duplication: WeChat resends for about
# a day, so three days is plenty (TTL on the database's own clock).
NOTIFY_IDS = "wechat_v3_notify_ids"
NOTIFY_IDS_TTL = timedelta(days=3)
NOTIFY_IDS_INDEXES = [IndexSpec.of(NOTIFY_IDS, "stored_at",
                                   expireAfterSeconds=int(NOTIFY_IDS_TTL.total_seconds()))]
REFUND_STATES = {"SUCCESS": "succeeded", "CLOSED": "failed", "ABNORMAL": "failed"}
# The refund errors after which WeChat surely refunded nothing (anything else: unknown).
REFUND_REFUSALS = ("PARAM_ERROR", "INVALID_REQUEST", "NOT_ENOUGH", "USER_ACCOUNT_ABNORMAL",
                   "MCH_NOT_EXISTS", "RESOURCE_NOT_EXISTS", "NO_AUTH", "SIGN_ERROR")
REFUND_ATTEMPTS = 3


class NotifyJson(BaseModel):
    """A v3 callback: signed (``Wechatpay-*`` headers), ``resource`` AES-256-GCM
    encrypted. For the OpenAPI document only."""

    model_config = ConfigDict(extra="allow")

    id: str
    create_time: str | None = None
    event_type: str | None = None
    resource_type: str | None = None
    summary: str | None = None
    resource: dict[str, str]


def fen(value: Any, what: str, facts: Mapping[str, Any]) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise refused("amount_mismatch", f"{what} {value!r} is not fen", facts)
    return value


class WeChatPayV3Provider(MerchantTransfers, PaymentProvider):
    identifier = IDENTIFIER
    verbose_name = "WeChat Pay (API v3)"
    channels = ("native", "mweb", "jsapi")
    url_name = URL_NAME
    capabilities = ProviderCapabilities(refunds=True, partial_refunds=True, payouts=True)
    # WeChat Pay refuses to close an order within 5 minutes of creating it.
    settle_after = timedelta(minutes=5)
    notify_media_type = "application/json"
    notify_body = NotifyJson
    refund_notify_body = NotifyJson
    transfer_notify_body = NotifyJson

    def __init__(self, runtime: V3Runtime) -> None:
        self.runtime = runtime

    @property
    def merchant(self) -> V3Merchant:
        if self.runtime.merchant is None:
            raise PaymentProviderError("WeChat Pay v3 is not started")
        return self.runtime.merchant

    # -- paying -------------------------------------------------------------------------

    async def create_payment(self, order: dict[str, Any], request: RequestInfo) -> dict[str, Any]:
        channel, m = order["channel"], self.merchant
        wechat = self.runtime.wechat
        # WeChat judges time_expire on real time: the wall clock on purpose.
        expiry = timedelta(seconds=wechat.app.settings.money.order_expiry_seconds)
        body: dict[str, Any] = {
            "appid": m.appid, "mchid": m.mchid, "description": order["title"][:127],
            "out_trade_no": order["out_trade_no"],
            "time_expire": (datetime.now(CHINA) + expiry).isoformat(timespec="seconds"),
            "notify_url": self.runtime.notify_url(),
            "amount": {"total": order["amount"], "currency": "CNY"}}
        if channel == "jsapi":
            body["payer"] = {"openid": await payer_openid(wechat.app, order, request)}
        if channel == "mweb":
            s = wechat.settings
            body["scene_info"] = {"payer_client_ip": request.client_ip,
                                  "h5_info": {"type": "Wap", "app_name": s.h5_site_name,
                                              "app_url": s.h5_site_url or
                                              wechat.public_url("/")}}
        answer = await self._call("POST", PATHS[channel], body)
        if channel == "native":
            return {"code_url": str(answer.get("code_url", ""))}
        if channel == "mweb":
            return {"mweb_url": str(answer.get("h5_url", ""))}
        return await self.jsapi_params(str(answer.get("prepay_id", "")))

    async def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        """The WeixinJSBridge ``getBrandWCPayRequest`` parameters, signType RSA."""
        m = self.merchant
        # WeChat's client checks timeStamp against real time: the wall clock on purpose.
        params = {"appId": m.appid, "timeStamp": str(int(time.time())),
                  "nonceStr": v3_signing.nonce(), "package": f"prepay_id={prepay_id}",
                  "signType": "RSA"}
        message = v3_signing.jsapi_message(m.appid, params["timeStamp"], params["nonceStr"],
                                           params["package"])
        params["paySign"] = await self.runtime.wechat.call(v3_signing.rsa_sign,
                                                           m.private_key, message)
        return params

    # -- callbacks ----------------------------------------------------------------------

    async def _open(self, body: bytes, headers: Mapping[str, str],
                    kind: str) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
        """Verify a callback; returns (notification id, what was booked for it before
        or None, the decrypted resource ({} when booked before))."""
        m = self.merchant
        try:
            m.platform.verify(headers, body)
        except V3SignatureError as e:
            raise refused(e.reason, str(e)) from None
        # WeChat stamps callbacks with real time, so the window is judged on the wall
        # clock on purpose (the app's clock may be moved in dev and tests).
        stamp = headers.get(v3_signing.TIMESTAMP) or ""
        seconds = parse_digits(stamp)
        if seconds is None or abs(time.time() - seconds) > NOTIFY_WINDOW_SECONDS:
            raise refused("stale_timestamp", f"Wechatpay-Timestamp {stamp[:20]!r} is not "
                                             "within 5 minutes of now")
        try:
            envelope = json.loads(body)
            notification_id, resource = str(envelope["id"]), envelope["resource"]
            if not isinstance(resource, dict):
                raise ValueError("resource")
        except (ValueError, KeyError, TypeError):
            raise refused("bad_json", "not a WeChat Pay v3 callback") from None
        seen = await self.runtime.wechat.app.store[NOTIFY_IDS].find_one(
            {"_id": notification_id, "kind": kind, "answered": True})
        if seen is not None:
            return notification_id, seen["state"], {}
        try:
            data = v3_signing.decrypt_resource(m.api_v3_key, resource)
        except V3SignatureError as e:
            raise refused(e.reason, str(e)) from None
        # Transfer callbacks name the merchant mch_id; payments and refunds mchid.
        if data.get("mch_id" if kind == "transfer" else "mchid") != m.mchid:
            raise refused("wrong_mch_id", "mchid does not match", data)
        if kind == "payment" and data.get("appid") != m.appid:
            raise refused("wrong_appid", "appid does not match", data)
        return notification_id, None, data

    async def handle_notify(self, body: bytes, headers: Mapping[str, str]) -> PaymentState:
        notification_id, booked, data = await self._open(body, headers, "payment")
        if booked is not None:
            return PaymentState(**booked)
        facts = {"out_trade_no": str(data.get("out_trade_no", "")),
                 "transaction_id": str(data.get("transaction_id", ""))}
        if data.get("trade_state") != "SUCCESS":
            return PaymentState("pending", raw=data, out_trade_no=facts["out_trade_no"])
        total = fen((data.get("amount") or {}).get("total"), "amount.total", facts)
        state = PaymentState("paid", total, facts["transaction_id"], data,
                             facts["out_trade_no"])
        await self._remember(notification_id, "payment", {
            "status": "paid", "amount": total, **facts})
        return state

    async def handle_refund_notify(self, body: bytes, headers: Mapping[str, str]) -> RefundState:
        notification_id, booked, data = await self._open(body, headers, "refund")
        if booked is not None:
            return RefundState(**booked)
        refund = fen((data.get("amount") or {}).get("refund"), "amount.refund", data)
        status = str(data.get("refund_status", ""))
        said = {"status": REFUND_STATES.get(status, "pending"),
                "out_refund_no": str(data.get("out_refund_no", "")), "amount": refund,
                "provider_status": status, "refund_id": str(data.get("refund_id", "")),
                "out_trade_no": str(data.get("out_trade_no", ""))}
        await self._remember(notification_id, "refund", said)
        return RefundState(**said, raw=data)

    async def _remember(self, notification_id: str, kind: str, state: dict[str, Any]) -> None:
        """Keep what a verified notification said; it counts for de-duplication only
        once it was answered SUCCESS (``record_notify`` marks it)."""
        await self.runtime.wechat.app.store[NOTIFY_IDS].update_one(
            {"_id": notification_id},
            {"$setOnInsert": {"kind": kind, "state": state, "answered": False},
             "$currentDate": {"stored_at": True}}, upsert=True)

    async def record_notify(self, verdict: NotifyVerdict) -> None:
        await notify.save(self.runtime.wechat, verdict)
        if verdict.outcome not in ("accepted", "duplicate") or not verdict.verified:
            return
        try:
            notification_id = str(json.loads(verdict.body)["id"])
            await self.runtime.wechat.app.store[NOTIFY_IDS].update_one(
                {"_id": notification_id}, {"$set": {"answered": True}})
        except Exception:
            log.exception("could not mark a v3 notification id answered")

    # The v2 numbering (at most 64 of letters, digits and ``_-|*@``): one rule, one place.
    refund_number = WeChatPayProvider.refund_number

    # -- reconciliation -----------------------------------------------------------------

    async def query(self, order: dict[str, Any]) -> PaymentState:
        path = (f"v3/pay/transactions/out-trade-no/{order['out_trade_no']}"
                f"?mchid={self.merchant.mchid}")
        try:
            data = await self._call("GET", path)
        except PaymentProviderError as e:
            if e.details.get("err_code") == "ORDER_NOT_EXIST":
                return PaymentState("unknown")
            raise
        if data.get("out_trade_no") != order["out_trade_no"]:
            raise PaymentProviderError("WeChat Pay answered about another order")
        state = data.get("trade_state", "")
        if state in PAID_STATES:
            return PaymentState("paid", int((data.get("amount") or {}).get("total", -1)),
                                str(data.get("transaction_id", "")), data)
        if state in CLOSED_STATES:
            return PaymentState("closed", raw=data)
        return PaymentState("pending", raw=data)

    async def close(self, order: dict[str, Any]) -> None:
        try:
            await self._call("POST", f"v3/pay/transactions/out-trade-no/"
                                     f"{order['out_trade_no']}/close",
                             {"mchid": self.merchant.mchid})
        except PaymentProviderError as e:
            if e.details.get("err_code") == "ORDER_NOT_EXIST":
                return  # never reached WeChat: nothing to close there
            # ORDER_PAID and the rest: do not close here; the next query books the payment.
            raise

    # -- refunds ------------------------------------------------------------------------

    async def refund(self, order: dict[str, Any], refund: dict[str, Any]) -> dict[str, Any]:
        body = {"out_trade_no": order["out_trade_no"], "out_refund_no": refund["out_refund_no"],
                "reason": str(refund.get("reason", ""))[:80],
                "notify_url": self.runtime.refund_notify_url(),
                "amount": {"refund": refund["amount"], "total": order["amount"],
                           "currency": "CNY"}}
        last: Exception | None = None
        for attempt in range(REFUND_ATTEMPTS):
            try:
                answer = await self.runtime.client.request("POST", "v3/refund/domestic/refunds",
                                                           body)
            except V3Refused as e:
                if e.code in REFUND_REFUSALS:
                    raise PaymentProviderError(str(e), err_code=e.code) from None
                last = e  # SYSTEM_ERROR, FREQUENCY_LIMITED, ...: may be retried
            except V3NoAnswer as e:
                last = e
            else:
                if (answer.get("amount") or {}).get("refund") != refund["amount"]:
                    raise RefundOutcomeUnknown("WeChat Pay answered another refund amount")
                return {"refund_id": str(answer.get("refund_id", "")),
                        "status": str(answer.get("status", "")), "attempts": attempt + 1}
            log.warning("refund %s attempt %d: %s", refund["out_refund_no"], attempt + 1, last)
        # Retried later with the same out_refund_no, which WeChat refunds at most once.
        raise RefundOutcomeUnknown(f"WeChat Pay refund outcome unknown: {last}")

    # -- plumbing -----------------------------------------------------------------------

    async def _call(self, method: str, path: str,
                    body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every failure becomes PaymentProviderError (with WeChat's ``err_code``)."""
        try:
            return await self.runtime.client.request(method, path, body)
        except V3Refused as e:
            raise PaymentProviderError(str(e), err_code=e.code) from None
        except V3NoAnswer as e:
            raise PaymentProviderError(str(e)) from None

