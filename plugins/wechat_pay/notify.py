"""WeChat Pay's notifies: payment results and (encrypted) refund results. XML in, XML out.

Every notify received is recorded in ``wechat_notifies`` with its verdict. A payment
notify is believed only when its signature (MD5 or HMAC-SHA256, compared in constant
time), appid, mch_id, order and amount all check out; the order is then paid through
the core's exactly-once ``mark_paid``, so any number of copies, arriving together or
racing the reconciliation job, book the money once. Duplicates are answered SUCCESS
(WeChat stops resending); anything forged or broken gets FAIL and changes nothing.

The route takes anyone's POST, so the records are bounded: each keeps at most
``[wechat_pay] notify_body_bytes`` of a verified body (256 bytes of one that failed
parsing or verification) with the length and SHA-256 of the whole, short ids, and a
``stored_at`` written by the database's own clock (``$currentDate``), which a TTL index
expires after ``notify_retention_days``. Nothing that decides whether money is booked
reads these records: the order's state and ``wechat_confirmed`` (no TTL) do.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

import tornado.web
from bson import ObjectId
from pydantic import BaseModel, ConfigDict
from pymongo.errors import DuplicateKeyError

from kpay.core.errors import ApiError
from kpay.core.money import accounts
from kpay.core.store import IndexSpec
from kpay.core.web import api
from plugins.wechat_pay import signing
from plugins.wechat_pay.provider import IDENTIFIER, TRADE_TYPES, NotifyRefused

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from plugins.wechat_pay.client import WeChatRuntime

log = logging.getLogger("kpay.wechat_pay.notify")

NOTIFIES = "wechat_notifies"
# One document per order whose payment a notify confirmed (the first copy wins).
CONFIRMED = "wechat_confirmed"
INDEXES = [IndexSpec.of(NOTIFIES, "out_trade_no", "received_at"),
           IndexSpec.of(NOTIFIES, "verdict", "received_at")]
# When the database stored a record ($currentDate): the TTL index's field. Not the app's
# clock, which a dev or test clock may have moved (months into the past, in tests).
STORED_AT = "stored_at"
# Of a body that failed parsing or verification, only this much is kept: enough to see
# what was sent, not enough to fill the disk ([wechat_pay] notify_body_bytes bounds the
# rest).
REFUSED_BODY_BYTES = 256
# Strings taken from a notify into its record are cut to this many characters (WeChat's
# ids have at most 32); a refusal's message to MESSAGE_CHARS.
FIELD_CHARS = 64
MESSAGE_CHARS = 300
CLIPPED_FIELDS = ("out_trade_no", "transaction_id", "out_refund_no", "refund_status")


async def retention_index(app: KPay, days: int) -> IndexSpec:
    """The TTL index deleting notify records ``days`` after they were stored. MongoDB
    refuses to re-create an index with another expiry, so when the setting changed the
    existing index is changed in place (collMod) first."""
    seconds = days * 86_400
    for name, index in (await app.store[NOTIFIES].index_information()).items():
        if ([key for key, _ in index["key"]] == [STORED_AT]
                and index.get("expireAfterSeconds") != seconds):
            await app.store.db.command("collMod", NOTIFIES,
                                       index={"name": name, "expireAfterSeconds": seconds})
            log.info("wechat_notifies: records now expire after %d days", days)
    return IndexSpec.of(NOTIFIES, STORED_AT, expireAfterSeconds=seconds)


def clip(value: Any, limit: int) -> Any:
    return value[:limit] if isinstance(value, str) else value


class NotifyXml(BaseModel):
    """A WeChat Pay v2 notify body: ``<xml><field>text</field>...</xml>``, every value
    text. For the OpenAPI document only: the handler parses the XML itself."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"xml": {"name": "xml"}})

    return_code: str
    return_msg: str | None = None
    appid: str | None = None
    mch_id: str | None = None
    nonce_str: str | None = None


class PayNotifyXml(NotifyXml):
    """The payment result, signed (``sign``, ``sign_type`` MD5 or HMAC-SHA256)."""

    sign: str | None = None
    sign_type: str | None = None
    result_code: str | None = None
    openid: str | None = None
    trade_type: str | None = None
    total_fee: str | None = None
    cash_fee: str | None = None
    fee_type: str | None = None
    transaction_id: str | None = None
    out_trade_no: str | None = None
    time_end: str | None = None


class RefundNotifyXml(NotifyXml):
    """The refund result: ``req_info`` is AES-256-ECB encrypted, base64."""

    req_info: str | None = None


class Refused(Exception):
    """The notify is not believed: answer FAIL, change nothing."""

    def __init__(self, verdict: str, message: str) -> None:
        super().__init__(message)
        self.verdict = verdict


class XmlNotifyHandler(tornado.web.RequestHandler):
    """XML in, XML out: WeChat reads only ``return_code`` from the answer."""

    runtime: WeChatRuntime
    kind = ""

    def initialize(self, runtime: WeChatRuntime, route_path: str = "") -> None:
        self.runtime = runtime
        self.route_path = route_path

    def check_xsrf_cookie(self) -> None:
        pass

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "text/xml; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    async def handle(self) -> None:
        # "verified" turns True once the provider has authenticated the body.
        record: dict[str, Any] = {"kind": self.kind, "received_at": self.runtime.app.clock.now(),
                                  "remote_ip": self.request.remote_ip, "verified": False}
        try:
            verdict = await self.process(record)
        except Refused as e:
            record.update(verdict=e.verdict, message=str(e))
            log.warning("wechat %s notify refused (%s): %s", self.kind, e.verdict, e)
            await self.save(record)
            self.set_status(400)
            self.finish(signing.fail_xml(str(e)))
            return
        except Exception:
            # Our failure, not WeChat's: FAIL makes WeChat resend later.
            log.exception("wechat %s notify failed", self.kind)
            record.update(verdict="error")
            await self.save(record)
            self.set_status(500)
            self.finish(signing.fail_xml("internal error"))
            return
        record["verdict"] = verdict
        await self.save(record)
        self.finish(signing.SUCCESS_XML)

    async def save(self, record: dict[str, Any]) -> None:
        """Store the record, bounded: part of the body (less of an unverified one), its
        length and hash, clipped strings; ``stored_at`` from the database's clock."""
        body = self.request.body
        keep = self.runtime.settings.notify_body_bytes
        if not record.get("verified"):
            keep = min(keep, REFUSED_BODY_BYTES)
        record.update(body=body[:keep].decode("utf-8", "replace"), body_bytes=len(body),
                      body_sha256=hashlib.sha256(body).hexdigest(),
                      body_truncated=len(body) > keep)
        for key in CLIPPED_FIELDS:
            if key in record:
                record[key] = clip(record[key], FIELD_CHARS)
        if "message" in record:
            record["message"] = clip(record["message"], MESSAGE_CHARS)
        try:
            await self.runtime.app.store[NOTIFIES].update_one(
                {"_id": ObjectId()}, {"$set": record, "$currentDate": {STORED_AT: True}},
                upsert=True)
        except Exception:
            log.exception("could not record a wechat notify")

    async def process(self, record: dict[str, Any]) -> str:
        raise NotImplementedError


class PayNotifyHandler(XmlNotifyHandler):
    kind = "pay"

    @api("WeChat Pay v2 payment notify (XML in, XML out)", auth=False, media_type="text/xml",
         error_media_type="text/xml", body=PayNotifyXml, body_media_type="text/xml")
    async def post(self) -> None:
        await self.handle()

    async def process(self, record: dict[str, Any]) -> str:
        try:
            state = await self.runtime.provider.handle_notify(self.request.body,
                                                              self.request.headers)
        except NotifyRefused as e:
            record.update(out_trade_no=e.params.get("out_trade_no"),
                          transaction_id=e.params.get("transaction_id"))
            raise Refused(e.verdict, e.message) from None
        record.update(verified=True, out_trade_no=state.out_trade_no,
                      transaction_id=state.transaction_id)
        orders = self.runtime.app.money.orders
        order = await orders.collection.find_one({"out_trade_no": state.out_trade_no})
        if order is None or order["channel"] not in TRADE_TYPES:
            raise Refused("unknown_order", f"no WeChat order {state.out_trade_no!r}")
        record["order_id"] = order["_id"]
        if state.status != "paid":
            return "payment_failed"  # a failed payment: nothing to book, stop resending
        if state.amount != order["amount"]:
            raise Refused("amount_mismatch",
                          f"total_fee {state.amount} is not the order's {order['amount']}")
        try:
            paid = await orders.mark_paid(order["_id"], state.amount,
                                          source=accounts.external(IDENTIFIER),
                                          transaction_id=state.transaction_id, via="notify")
        except ApiError as e:
            if e.code != "order_closed":
                raise Refused(e.code, e.message) from None
            # Paid at WeChat after we closed it: the money is real and needs a person
            # (refund it in the merchant platform). Resending will not change that.
            log.error("order %s was paid at WeChat (%s) after it was closed: refund it",
                      order["_id"], state.transaction_id)
            record["needs_attention"] = True
            return "paid_after_close"
        if paid["status"] not in ("paid", "fulfilled", "refunded"):
            raise Refused("not_paid", f"order is {paid['status']}")
        # Which copy was first is told by a unique insert, not by reading the order.
        try:
            await self.runtime.app.store[CONFIRMED].insert_one(
                {"_id": order["_id"], "transaction_id": state.transaction_id,
                 "at": record["received_at"]})
        except DuplicateKeyError:
            return "duplicate"
        return "paid"


class RefundNotifyHandler(XmlNotifyHandler):
    """Refund results (``req_info`` encrypted, decrypted by the provider)."""

    kind = "refund"

    @api("WeChat Pay v2 refund notify (XML in, XML out, req_info encrypted)", auth=False,
         media_type="text/xml", error_media_type="text/xml", body=RefundNotifyXml,
         body_media_type="text/xml")
    async def post(self) -> None:
        await self.handle()

    async def process(self, record: dict[str, Any]) -> str:
        try:
            info = await self.runtime.provider.handle_refund_notify(self.request.body)
        except NotifyRefused as e:
            raise Refused(e.verdict, e.message) from None
        out_refund_no = info.get("out_refund_no", "")
        record.update(verified=True, out_trade_no=info.get("out_trade_no"),
                      out_refund_no=out_refund_no,
                      refund_status=info.get("refund_status"))
        refunds = self.runtime.app.money.orders.refunds
        refund = await refunds.find_one({"out_refund_no": out_refund_no})
        if refund is None:
            raise Refused("unknown_refund", f"no refund {out_refund_no!r}")
        if info.get("refund_fee") != str(refund["amount"]):
            raise Refused("amount_mismatch", "refund_fee is not the refund's amount")
        status = info.get("refund_status", "")
        await refunds.update_one({"_id": refund["_id"]},
                                 {"$set": {"provider_status": status,
                                           "provider_refund_id": info.get("refund_id", "")}})
        if status != "SUCCESS":
            # CHANGE (card closed...) or REFUNDCLOSE: the money did not reach the payer.
            log.error("WeChat refund %s ended %s: handle it in the merchant platform",
                      out_refund_no, status)
            record["needs_attention"] = True
        return "refund_" + status.lower()
