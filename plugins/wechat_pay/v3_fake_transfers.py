"""商家转账 on the fake WeChat Pay v3 (v3_fake.py): create, query and cancel a transfer
bill, the receiver's confirmation, WeChat's 24-hour expiry on the fake's clock, and the
signed transfer callback (with WeChat's retries).

Test and demo controls on ``fake.transfers``: :meth:`FakeTransfers.confirm` (the
receiver confirms; also ``POST /_fake/v3/transfer/confirm?out_bill_no=``),
:meth:`FakeTransfers.fail`, ``refuse`` (the next creates are refused with that error
code), ``lose_answers`` (that many creates are made but answered HTTP 500), ``clock``
(what "now" is, for the expiry) and :meth:`FakeTransfers.notify` (a callback body).
From 2,000 yuan a create must carry ``user_name`` encrypted with the key its
``Wechatpay-Serial`` names (the fake holds the private halves); a bill keeps the
decrypted name (``bills[n]["user_name"]``) for tests to check.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import tornado.web

from plugins.wechat_pay import v3_signing
from plugins.wechat_pay.fake import Delivery
from plugins.wechat_pay.v3_fake_routes import Refusal, V3Handler

if TYPE_CHECKING:
    from plugins.wechat_pay.v3_fake import FakeWeChatV3

# An unconfirmed bill is closed this long after it was made, as WeChat does.
EXPIRY = timedelta(hours=24)
MIN_AMOUNT = 10  # 0.1 yuan
REAL_NAME_FROM = 200_000
FINAL = ("SUCCESS", "FAIL", "CANCELLED")


class FakeTransfers:
    def __init__(self, fake: FakeWeChatV3, clock: Callable[[], datetime]) -> None:
        self.fake = fake
        self.clock = clock
        self.bills: dict[str, dict[str, Any]] = {}
        self.refuse = ""
        self.lose_answers = 0

    def real_name(self, p: dict[str, Any], serial: str) -> str:
        """The decrypted ``user_name``, with the private half of the key ``serial``
        (``Wechatpay-Serial``) names; "" when none was sent."""
        if not p.get("user_name"):
            return ""
        fake = self.fake
        keys = {fake.public_key_id: fake.wechatpay_key,
                v3_signing.certificate_serial(fake.certificate): fake.cert_key}
        key = keys.get(v3_signing.normal_serial(serial)) or keys.get(serial)
        if key is None:
            raise Refusal(400, "PARAM_ERROR", "Wechatpay-Serial 无效")
        try:
            return v3_signing.decrypt_sensitive(key, str(p["user_name"]))
        except ValueError:
            raise Refusal(400, "PARAM_ERROR", "user_name 解密失败") from None

    def create(self, p: dict[str, Any], serial: str = "") -> tuple[int, dict[str, Any]]:
        fake = self.fake
        if self.refuse:
            raise Refusal(403, self.refuse, "转账被拒绝")
        if p.get("appid") != fake.appid:
            raise Refusal(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        amount = p.get("transfer_amount")
        missing = [k for k in ("out_bill_no", "transfer_scene_id", "openid", "transfer_remark",
                               "transfer_scene_report_infos") if not p.get(k)]
        if missing or not isinstance(amount, int):
            raise Refusal(400, "PARAM_ERROR", f"参数错误 {missing}")
        if amount < MIN_AMOUNT:
            raise Refusal(400, "PARAM_ERROR", "转账金额不能低于0.1元")
        name = self.real_name(p, serial)
        if amount >= REAL_NAME_FROM and not name:
            raise Refusal(400, "PARAM_ERROR", "转账金额大于等于2000元时必须填写收款用户姓名")
        number = p["out_bill_no"]
        bill = self.bills.get(number)
        if bill is None:
            bill = self.bills[number] = {
                "out_bill_no": number, "transfer_bill_no": "1330" + secrets.token_hex(14),
                "amount": amount, "openid": p["openid"], "state": "WAIT_USER_CONFIRM",
                "package_info": "ABBQO+oYAAABAAAAAAB" + secrets.token_hex(24),
                "notify_url": p.get("notify_url", ""), "remark": p["transfer_remark"],
                "scene_id": p["transfer_scene_id"], "fail_reason": "", "user_name": name,
                "created_at": self.clock(), "updated_at": self.clock()}
        elif bill["amount"] != amount or bill["openid"] != p["openid"]:
            raise Refusal(400, "INVALID_REQUEST", "商户单号重复，且与原单据信息不一致")
        self._expire(bill)
        if self.lose_answers > 0:  # made, but the answer is lost
            self.lose_answers -= 1
            raise Refusal(500, "SYSTEM_ERROR", "系统错误")
        answer = {"out_bill_no": number, "transfer_bill_no": bill["transfer_bill_no"],
                  "create_time": bill["created_at"].isoformat(timespec="seconds"),
                  "state": bill["state"]}
        if bill["state"] == "WAIT_USER_CONFIRM":
            answer["package_info"] = bill["package_info"]
        if bill["fail_reason"]:
            answer["fail_reason"] = bill["fail_reason"]
        return 200, answer

    def bill(self, number: str) -> dict[str, Any]:
        bill = self.bills.get(number)
        if bill is None:
            raise Refusal(404, "NOT_FOUND", "记录不存在")
        self._expire(bill)
        return bill

    def report(self, bill: dict[str, Any]) -> dict[str, Any]:
        """What a query answers (no package_info, as WeChat's query)."""
        data = {"mch_id": self.fake.mchid, "appid": self.fake.appid,
                "out_bill_no": bill["out_bill_no"], "transfer_bill_no": bill["transfer_bill_no"],
                "state": bill["state"], "transfer_amount": bill["amount"],
                "transfer_remark": bill["remark"], "openid": bill["openid"],
                "create_time": bill["created_at"].isoformat(timespec="seconds"),
                "update_time": bill["updated_at"].isoformat(timespec="seconds")}
        if bill["fail_reason"]:
            data["fail_reason"] = bill["fail_reason"]
        return data

    def cancel(self, number: str) -> tuple[int, dict[str, Any]]:
        bill = self.bill(number)
        if bill["state"] in ("SUCCESS", "FAIL"):
            raise Refusal(400, "INVALID_REQUEST", "转账单当前状态不允许撤销")
        if bill["state"] != "CANCELLED":
            # No callback for a cancel the merchant asked for: its answer says it. (Were
            # one sent, it would race the core's own booking of an expiry; the money is
            # returned once either way.)
            bill["state"], bill["updated_at"] = "CANCELLED", self.clock()
        return 200, {"out_bill_no": number, "transfer_bill_no": bill["transfer_bill_no"],
                     "state": "CANCELLED",
                     "update_time": bill["updated_at"].isoformat(timespec="seconds")}

    # -- what the receiver and WeChat do ------------------------------------------------

    def confirm(self, number: str) -> Delivery | None:
        """The receiver confirms in WeChat: SUCCESS and its callback (None if the bill
        was not waiting: expired, cancelled, confirmed before, or never made)."""
        bill = self.bills.get(number)
        if bill is None:
            return None
        self._expire(bill)
        if bill["state"] != "WAIT_USER_CONFIRM":
            return None
        return self._end(bill, "SUCCESS")

    def fail(self, number: str, reason: str = "PAYEE_ACCOUNT_ABNORMAL") -> Delivery | None:
        """The transfer fails at WeChat (the receiver's account, ...): FAIL and its callback."""
        bill = self.bills[number]
        if bill["state"] in FINAL:
            return None
        return self._end(bill, "FAIL", reason)

    def _expire(self, bill: dict[str, Any]) -> None:
        if bill["state"] == "WAIT_USER_CONFIRM" and self.clock() > bill["created_at"] + EXPIRY:
            self._end(bill, "CANCELLED", "TRANSFER_EXPIRED")

    def _end(self, bill: dict[str, Any], state: str, reason: str = "") -> Delivery | None:
        bill["state"], bill["fail_reason"], bill["updated_at"] = state, reason, self.clock()
        if not bill["notify_url"]:
            return None
        return self.fake.send(bill["notify_url"], self.notify(bill["out_bill_no"]))

    def notify(self, number: str, /, *, notification_id: str | None = None,
               **changes: Any) -> bytes:
        """The callback body of the bill's present state; ``changes`` replace fields
        before it is encrypted (tests build bad ones)."""
        data = {**self.report(self.bills[number]), **changes}
        data.pop("appid", None)
        return self.fake.callback("MCHTRANSFER.BILL.FINISHED", "mch_payment", data,
                                  notification_id=notification_id)


class TransferHandler(V3Handler):
    async def post(self) -> None:
        serial = self.request.headers.get(v3_signing.SERIAL, "")
        await self.handle("transfer-bills/create",
                          lambda p: self.fake.transfers.create(p, serial))


class TransferQueryHandler(V3Handler):
    async def get(self, number: str) -> None:
        transfers = self.fake.transfers
        await self.handle("transfer-bills/query",
                          lambda _: (200, transfers.report(transfers.bill(number))))


class TransferCancelHandler(V3Handler):
    async def post(self, number: str) -> None:
        await self.handle("transfer-bills/cancel", lambda _: self.fake.transfers.cancel(number))


class DemoConfirmHandler(V3Handler):
    """``POST /_fake/v3/transfer/confirm?out_bill_no=``: the receiver confirms (demos)."""

    def post(self) -> None:
        number = self.get_query_argument("out_bill_no", "")
        if number not in self.fake.transfers.bills:
            raise tornado.web.HTTPError(404)
        self.fake.transfers.confirm(number)
        self.finish({"state": self.fake.transfers.bills[number]["state"]})


BILL = r"([A-Za-z0-9]{1,32})"
TRANSFER_ROUTES = [
    (r"/v3/fund-app/mch-transfer/transfer-bills", TransferHandler),
    (rf"/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{BILL}", TransferQueryHandler),
    (rf"/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{BILL}/cancel",
     TransferCancelHandler),
    (r"/_fake/v3/transfer/confirm", DemoConfirmHandler),
]
