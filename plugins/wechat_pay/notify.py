"""WeChat Pay's notifies: payment results and (encrypted) refund results. XML in, XML out.

Every notify received is recorded in ``wechat_notifies`` with its verdict. A payment
notify is believed only when its signature (MD5 or HMAC-SHA256, compared in constant
time), appid, mch_id, order and amount all check out; the order is then paid through
the core's exactly-once ``mark_paid``, so any number of copies, arriving together or
racing the reconciliation job, book the money once. Duplicates are answered SUCCESS
(WeChat stops resending); anything forged or broken gets FAIL and changes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import tornado.web
from pymongo.errors import DuplicateKeyError

from kpay.core.errors import ApiError
from kpay.core.money import accounts
from kpay.core.store import IndexSpec
from kpay.core.web import api
from plugins.wechat_pay import signing
from plugins.wechat_pay.provider import IDENTIFIER, TRADE_TYPES, NotifyRefused

if TYPE_CHECKING:
    from plugins.wechat_pay.client import WeChatRuntime

log = logging.getLogger("kpay.wechat_pay.notify")

NOTIFIES = "wechat_notifies"
# One document per order whose payment a notify confirmed (the first copy wins).
CONFIRMED = "wechat_confirmed"
INDEXES = [IndexSpec.of(NOTIFIES, "out_trade_no", "received_at"),
           IndexSpec.of(NOTIFIES, "verdict", "received_at")]
# Enough of a body to investigate a forged notify, not enough to fill the disk.
KEEP_BODY_BYTES = 4096


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
        record: dict[str, Any] = {"kind": self.kind, "received_at": self.runtime.app.clock.now(),
                                  "remote_ip": self.request.remote_ip,
                                  "body": self.request.body[:KEEP_BODY_BYTES].decode(
                                      "utf-8", "replace")}
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
        try:
            await self.runtime.app.store[NOTIFIES].insert_one(record)
        except Exception:
            log.exception("could not record a wechat notify")

    async def process(self, record: dict[str, Any]) -> str:
        raise NotImplementedError


class PayNotifyHandler(XmlNotifyHandler):
    kind = "pay"

    @api("WeChat Pay v2 payment notify (XML in, XML out)", auth=False)
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
        record.update(out_trade_no=state.out_trade_no, transaction_id=state.transaction_id)
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

    @api("WeChat Pay v2 refund notify (XML in, XML out, req_info encrypted)", auth=False)
    async def post(self) -> None:
        await self.handle()

    async def process(self, record: dict[str, Any]) -> str:
        try:
            info = await self.runtime.provider.handle_refund_notify(self.request.body)
        except NotifyRefused as e:
            raise Refused(e.verdict, e.message) from None
        out_refund_no = info.get("out_refund_no", "")
        record.update(out_trade_no=info.get("out_trade_no"), out_refund_no=out_refund_no,
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
