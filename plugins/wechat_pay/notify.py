"""The records of WeChat Pay's notifies, and their XML for the OpenAPI document.

The core serves the notify routes (``/api/v1/pay/wechat/notify`` and
``.../refund-notify``, kpay/core/money/notify.py): the provider verifies the body
(signature, appid, mch_id), the core books it exactly once, and hands the verdict to
the provider, which answers in WeChat's XML and records it here (``record_notify``).
Every notify received is recorded in ``wechat_notifies`` with its verdict.

The route takes anyone's POST, so the records are bounded: each keeps at most
``[wechat_pay] notify_body_bytes`` of a verified body (256 bytes of one that failed
parsing or verification) with the length and SHA-256 of the whole, short ids, and a
``stored_at`` written by the database's own clock (``$currentDate``), which a TTL index
expires after ``notify_retention_days``. Nothing that decides whether money is booked
reads these records: the order's state does.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pydantic import BaseModel, ConfigDict

from kpay.core.money.providers import NotifyVerdict
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from plugins.wechat_pay.client import WeChatRuntime

log = logging.getLogger("kpay.wechat_pay.notify")

NOTIFIES = "wechat_notifies"
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


def record_of(verdict: NotifyVerdict) -> dict[str, Any]:
    """The record of one notify (before bounding), from the core's verdict."""
    record: dict[str, Any] = {"kind": "pay" if verdict.kind == "payment" else "refund",
                              "received_at": verdict.received_at,
                              "remote_ip": verdict.remote_ip, "verified": verdict.verified,
                              "verdict": verdict.reason}
    for key in (*CLIPPED_FIELDS, "order_id"):
        if verdict.facts.get(key) is not None:
            record[key] = verdict.facts[key]
    if verdict.message:
        record["message"] = verdict.message
    if verdict.needs_attention:
        record["needs_attention"] = True
    return record


async def save(runtime: WeChatRuntime, verdict: NotifyVerdict) -> None:
    """Store the record of a notify, bounded: part of the body (less of an unverified
    one), its length and hash, clipped strings; ``stored_at`` from the database's clock."""
    record = record_of(verdict)
    body = verdict.body
    keep = runtime.settings.notify_body_bytes
    if not verdict.verified:
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
        await runtime.app.store[NOTIFIES].update_one(
            {"_id": ObjectId()}, {"$set": record, "$currentDate": {STORED_AT: True}},
            upsert=True)
    except Exception:
        log.exception("could not record a wechat notify")
