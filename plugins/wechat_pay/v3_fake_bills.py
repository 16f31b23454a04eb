"""The fake WeChat Pay v3's trade bills (申请交易账单): ``GET /v3/bill/tradebill`` answers
a ``download_url`` with the SHA1 of the file, ``GET /v3/billdownload/file`` serves it,
unsigned as WeChat does. A day's bill is built from what the fake recorded: its orders
paid that day and its refunds made that day (by ``fake.now``), in WeChat's CSV format.

Test hooks on ``fake.bills`` plant differences: ``plant(day, line)`` adds a raw line
(``bill_line(...)`` builds a well-formed one), ``omit`` hides an order's payment,
``amounts`` overrides what the bill says a payment or refund was (fen), ``tamper``
serves a file that does not match its hash.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plugins.wechat_pay.v3_fake_routes import Refusal, V3Handler

if TYPE_CHECKING:
    from plugins.wechat_pay.v3_fake import FakeWeChatV3

#: WeChat's columns of a bill of type ALL (the ones kpay reads are by name).
HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
          "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
          "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,"
          "费率备注")
SUMMARY = ("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,"
           "申请退款总金额")


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def bill_line(moment: datetime, appid: str, mchid: str, transaction_id: str,
              out_trade_no: str, total: int, *, state: str = "SUCCESS",
              refund_id: str = "", out_refund_no: str = "", refund: int = 0) -> str:
    """One line of a bill as WeChat writes it: every field after a backquote."""
    fee = total * 6 // 1000  # 0.6%, in fen (the bill shows it to 5 places)
    fields = [moment.strftime("%Y-%m-%d %H:%M:%S"), appid, mchid, "0", "", transaction_id,
              out_trade_no, "o-payer", "JSAPI", state, "OTHERS", "CNY",
              yuan(total), "0.00", refund_id, out_refund_no, yuan(refund), "0.00",
              "ORIGINAL" if refund else "", "SUCCESS" if refund else "", "kpay", "",
              f"{fee / 100:.5f}", "0.60%", yuan(total), yuan(refund), ""]
    return ",".join("`" + f for f in fields)


@dataclass
class FakeBills:
    planted: dict[str, list[str]] = field(default_factory=dict)
    omit: set[str] = field(default_factory=set)
    amounts: dict[str, int] = field(default_factory=dict)
    tamper: bool = False
    files: dict[str, bytes] = field(default_factory=dict)

    def plant(self, day: str, line: str) -> None:
        self.planted.setdefault(day, []).append(line)

    def build(self, fake: FakeWeChatV3, day: str) -> bytes | None:
        """The bill of ``day`` (YYYY-MM-DD, Beijing), or None when nothing happened."""
        from plugins.wechat_pay.v3_fake import CHINA

        lines = []
        for order in fake.orders.values():
            paid = order.paid_at
            if (paid is None or order.out_trade_no in self.omit
                    or paid.astimezone(CHINA).strftime("%Y-%m-%d") != day):
                continue
            lines.append(bill_line(paid.astimezone(CHINA), fake.appid, fake.mchid,
                                   order.transaction_id, order.out_trade_no,
                                   self.amounts.get(order.out_trade_no, order.total)))
        for number, refund in fake.refunds.items():
            at = refund.get("at")
            if at is None or at.astimezone(CHINA).strftime("%Y-%m-%d") != day:
                continue
            order = fake.orders[refund["out_trade_no"]]
            lines.append(bill_line(at.astimezone(CHINA), fake.appid, fake.mchid,
                                   order.transaction_id, order.out_trade_no, order.total,
                                   state="REFUND", refund_id=refund["refund_id"],
                                   out_refund_no=number,
                                   refund=self.amounts.get(number, refund["amount"])))
        lines += self.planted.get(day, [])
        if not lines:
            return None
        summary = ",".join("`" + v for v in (str(len(lines)), "0.00", "0.00", "0.00",
                                             "0.00000", "0.00", "0.00"))
        return "\r\n".join([HEADER, *lines, SUMMARY, summary, ""]).encode()


class TradeBillHandler(V3Handler):
    async def get(self) -> None:
        def work(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            fake, day = self.fake, self.get_query_argument("bill_date", "")
            if len(day) != 10:
                raise Refusal(400, "PARAM_ERROR", "bill_date 格式不正确")
            data = fake.bills.build(fake, day)
            if data is None:
                raise Refusal(400, "NO_STATEMENT_EXIST", "要申请的账单不存在")
            token = secrets.token_hex(12)
            # The file served is the bill; with ``tamper``, one byte of it changed.
            fake.bills.files[token] = data.replace(b"SUCCESS", b"SUCCESs", 1) \
                if fake.bills.tamper else data
            return 200, {"hash_type": "SHA1", "hash_value": hashlib.sha1(data).hexdigest(),
                         "download_url": f"{fake.base_url}v3/billdownload/file?token={token}"}

        await self.handle("bill/tradebill", work)


class BillDownloadHandler(V3Handler):
    async def get(self) -> None:
        self.fake.calls["billdownload"] += 1
        try:
            self.checked()
        except Refusal as e:
            return self.answer(e.status, {"code": e.code, "message": e.message})
        data = self.fake.bills.files.get(self.get_query_argument("token", ""))
        if data is None:
            return self.answer(404, {"code": "RESOURCE_NOT_EXISTS", "message": "账单不存在"})
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(data)  # not signed: the merchant checks the hash


ROUTES = [
    (r"/v3/bill/tradebill", TradeBillHandler),
    (r"/v3/billdownload/file", BillDownloadHandler),
]
