"""The fake payment provider kpay's test suites share (``kpay.testing`` exports it):
one configurable stand-in for an outside payment system, notifies included."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kpay import hookimpl
from kpay.core.errors import PaymentProviderError
from kpay.core.money.providers import (
    NotifyRefused,
    NotifyVerdict,
    PaymentProvider,
    PaymentState,
    ProviderCapabilities,
    RefundState,
    RequestInfo,
    TransferState,
)

if TYPE_CHECKING:
    from kpay.core.app import KPay


class FakeProvider(PaymentProvider):
    """One configurable stand-in for an outside payment system, for any test suite.

    ``FakeProvider("fakepay", ("native", "jsapi"), url_name="fake")`` serves those
    channels; ``create_payment`` hands out what WeChat-like pages expect (a
    ``code_url`` for native, ``getBrandWCPayRequest`` parameters for jsapi, an
    ``mweb_url``). It answers ``query`` from ``states`` (set by the test) and records
    ``queried``, ``closed`` and ``refunds`` (the refund numbers sent); ``refuse_start``,
    ``refuse_close``, ``refuse_refunds`` and ``lose_next_refund_answer`` make it fail.

    The core serves its notify routes (``url_name``, by default the identifier):
    :meth:`payment_notify` and :meth:`refund_notify` build a notify (JSON, signed with
    HMAC-SHA256 of ``secret`` in the ``X-Fake-Signature`` header) as the outside system
    would send it; answers are the default JSON ones; ``verdicts`` keeps every verdict.
    """

    __test__ = False

    def __init__(self, identifier: str = "fakepay",
                 channels: tuple[str, ...] = ("native", "jsapi", "mweb"), *,
                 url_name: str | None = None, capabilities: ProviderCapabilities | None = None,
                 settle_after: timedelta | None = None, secret: str = "fake-secret") -> None:
        self.identifier = identifier
        self.verbose_name = f"fake provider {identifier}"
        self.channels = channels
        # Its notify routes are /api/v1/pay/<identifier>/... unless told otherwise ("":
        # none, as a provider written before the core owned the routes).
        self.url_name = identifier if url_name is None else url_name
        self.capabilities = capabilities or ProviderCapabilities()
        self.settle_after = settle_after if settle_after is not None else self.settle_after
        self.secret = secret
        self.states: dict[str, PaymentState] = {}
        self.queried: list[str] = []
        self.closed: list[str] = []
        self.refunds: list[str] = []
        self.refuse_start = False
        self.refuse_close = False
        self.refuse_refunds = False
        self.lose_next_refund_answer = False
        self.verdicts: list[NotifyVerdict] = []

    async def create_payment(self, order: dict[str, Any], request: RequestInfo) -> dict[str, Any]:
        if self.refuse_start:
            raise PaymentProviderError(f"{self.identifier} is down")
        if order["channel"] == "jsapi":
            return {"appId": "wx0000000000000000", "timeStamp": "1700000000",
                    "nonceStr": "n" + order["_id"], "package": f"prepay_id=wx{order['_id']}",
                    "signType": "MD5", "paySign": "0" * 32}
        if order["channel"] == "mweb":
            return {"mweb_url": f"https://pay.example/mweb?pr={order['_id']}"}
        return {"code_url": f"weixin://wxpay/bizpayurl?pr={order['_id']}"}

    async def query(self, order: dict[str, Any]) -> PaymentState:
        self.queried.append(order["_id"])
        return self.states.get(order["_id"], PaymentState("pending"))

    async def close(self, order: dict[str, Any]) -> None:
        if self.refuse_close:
            raise PaymentProviderError("ORDERPAID: the order was paid")
        self.closed.append(order["_id"])

    async def refund(self, order: dict[str, Any], refund: dict[str, Any]) -> dict[str, Any]:
        if self.refuse_refunds:
            raise PaymentProviderError("refund refused")
        self.refunds.append(refund["out_refund_no"])
        if self.lose_next_refund_answer:
            # The refund went through outside but the answer never arrived.
            self.lose_next_refund_answer = False
            raise ConnectionError("connection reset")
        return {"refund_id": f"{self.identifier}-{refund['out_refund_no']}"}

    # -- notifies ------------------------------------------------------------------

    def sign(self, body: bytes) -> str:
        return hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()

    def signed(self, fields: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(fields).encode()
        return body, {"Content-Type": "application/json", "X-Fake-Signature": self.sign(body)}

    def payment_notify(self, order: dict[str, Any], **changes: Any) -> tuple[bytes, dict[str, str]]:
        """``(body, headers)`` of a genuine notify that ``order`` (the API's or the
        stored one) was paid; ``changes`` replace its fields (a forged amount, ...)."""
        return self.signed({"out_trade_no": order["out_trade_no"], "amount": order["amount"],
                            "status": "paid", "transaction_id": f"tx-{order['out_trade_no']}",
                            **changes})

    def refund_notify(self, refund: dict[str, Any], **changes: Any) -> tuple[bytes, dict[str, str]]:
        """``(body, headers)`` of a genuine notify that ``refund`` reached the payer."""
        return self.signed({"out_refund_no": refund["out_refund_no"],
                            "amount": refund["amount"], "status": "succeeded", **changes})

    def _verified(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        if not hmac.compare_digest(headers.get("X-Fake-Signature", ""), self.sign(body)):
            raise NotifyRefused("bad_signature", "signature does not match")
        try:
            fields = json.loads(body)
        except ValueError:
            raise NotifyRefused("bad_body", "not JSON") from None
        if not isinstance(fields, dict) or not isinstance(fields.get("amount"), int):
            raise NotifyRefused("bad_body", "amount must be integer fen")
        return fields

    async def handle_notify(self, body: bytes, headers: Mapping[str, str]) -> PaymentState:
        fields = self._verified(body, headers)
        status = fields.get("status") if fields.get("status") in ("paid", "closed") else "pending"
        return PaymentState(status, fields["amount"], str(fields.get("transaction_id", "")),
                            fields, str(fields.get("out_trade_no", "")))

    async def handle_refund_notify(self, body: bytes, headers: Mapping[str, str]) -> RefundState:
        fields = self._verified(body, headers)
        status = fields.get("status") if fields.get("status") in ("succeeded",
                                                                   "failed") else "pending"
        return RefundState(status, str(fields.get("out_refund_no", "")), fields["amount"],
                           provider_status=str(fields.get("status", "")).upper(), raw=fields)


    async def record_notify(self, verdict: NotifyVerdict) -> None:
        self.verdicts.append(verdict)


class FakePayoutProvider(FakeProvider):
    """A :class:`FakeProvider` that also pays out (``capabilities.payouts``), as WeChat's
    商家转账 does: a transfer answers ``waiting_confirmation`` with a ``package_info``
    until the receiver confirms (:meth:`confirm_transfer`), or expires.

    ``transfer_mode`` sets how the next transfers are answered: ``"wait"`` (the
    default), ``"succeed"`` (no confirmation needed), ``"fail"`` (refused: nothing
    sent, ``PaymentProviderError``) or ``"lose"`` (sent, but the answer is lost: a
    ``ConnectionError``). A transfer sent again under a known ``out_bill_no`` is not
    sent twice (the first answer is returned), as WeChat does. ``transfers`` holds each
    transfer by ``out_bill_no`` and ``sends`` counts the transfer calls; with
    ``state_path`` they are kept in that JSON file, so they outlive a crashed server
    (the crash tests). :meth:`transfer_notify` builds a signed transfer notify.
    """

    def __init__(self, identifier: str = "fakepay",
                 channels: tuple[str, ...] = ("native", "jsapi", "mweb"), *,
                 state_path: str | None = None, **options: Any) -> None:
        options.setdefault("capabilities", ProviderCapabilities(payouts=True))
        super().__init__(identifier, channels, **options)
        self.transfer_mode = "wait"
        self.refuse_cancel = False
        self.state_path = state_path
        self.transfers: dict[str, dict[str, Any]] = {}
        self.sends: dict[str, int] = {}
        self._load()

    def _load(self) -> None:
        if self.state_path and os.path.exists(self.state_path):
            with open(self.state_path) as f:
                saved = json.load(f)
            self.transfers, self.sends = saved["transfers"], saved["sends"]

    def _save(self) -> None:
        if self.state_path:
            with open(self.state_path + ".tmp", "w") as f:
                json.dump({"transfers": self.transfers, "sends": self.sends}, f)
            os.replace(self.state_path + ".tmp", self.state_path)

    def _state(self, bill: dict[str, Any]) -> TransferState:
        return TransferState(bill["status"], bill["out_bill_no"], bill["amount"],
                             package_info=bill.get("package_info", ""),
                             transfer_bill_no=bill["transfer_bill_no"],
                             provider_status=bill["status"].upper(),
                             confirm_params={"mchId": "1900000109",
                                             "appId": "wx0000000000000000"})

    async def transfer(self, payout: dict[str, Any], openid: str) -> TransferState:
        self._load()
        number = payout["out_bill_no"]
        self.sends[number] = self.sends.get(number, 0) + 1
        if self.transfer_mode == "fail":
            self._save()
            raise PaymentProviderError("NOT_ENOUGH: the merchant's balance is too low")
        if number not in self.transfers:
            waiting = self.transfer_mode in ("wait", "lose")
            self.transfers[number] = {
                "out_bill_no": number, "amount": payout["amount"], "openid": openid,
                "transfer_bill_no": f"tb-{number}",
                "status": "waiting_confirmation" if waiting else "succeeded",
                "package_info": f"pkg-{number}" if waiting else ""}
        self._save()
        if self.transfer_mode == "lose":
            raise ConnectionError("connection reset after the transfer was taken")
        return self._state(self.transfers[number])

    async def query_transfer(self, payout: dict[str, Any]) -> TransferState:
        self._load()
        bill = self.transfers.get(payout["out_bill_no"])
        if bill is None:
            return TransferState("not_found", payout["out_bill_no"])
        return self._state(bill)

    async def cancel_transfer(self, payout: dict[str, Any]) -> None:
        self._load()
        bill = self.transfers.get(payout["out_bill_no"])
        if self.refuse_cancel or (bill and bill["status"] == "succeeded"):
            raise PaymentProviderError("the transfer was confirmed; it cannot be cancelled")
        if bill:
            bill["status"] = "cancelled"
            self._save()

    def confirm_transfer(self, out_bill_no: str) -> None:
        """The receiver confirms in WeChat (the dev confirm route calls it too)."""
        self._load()
        if out_bill_no in self.transfers:
            self.transfers[out_bill_no]["status"] = "succeeded"
            self._save()

    def expire_transfer(self, out_bill_no: str) -> None:
        """The provider's own expiry (WeChat: 24 hours unconfirmed)."""
        self._load()
        self.transfers[out_bill_no]["status"] = "expired"
        self._save()

    def transfer_notify(self, out_bill_no: str, **changes: Any) -> tuple[bytes, dict[str, str]]:
        """``(body, headers)`` of a genuine notify of the transfer's present state."""
        bill = self.transfers[out_bill_no]
        return self.signed({"out_bill_no": out_bill_no, "amount": bill["amount"],
                            "status": bill["status"], **changes})

    async def handle_transfer_notify(self, body: bytes,
                                     headers: Mapping[str, str]) -> TransferState:
        fields = self._verified(body, headers)
        known = ("waiting_confirmation", "succeeded", "failed", "cancelled", "expired")
        status = fields.get("status") if fields.get("status") in known else "pending"
        return TransferState(status, str(fields.get("out_bill_no", "")), fields["amount"],
                             transfer_bill_no=f"tb-{fields.get('out_bill_no', '')}",
                             provider_status=str(fields.get("status", "")).upper(),
                             raw=fields)


class FakeProviderPlugin:
    """Registers fake providers (``kpay_extra_plugins``: ``("fakes",
    FakeProviderPlugin(FakeProvider(...)))``)."""

    def __init__(self, *providers: PaymentProvider) -> None:
        self.providers = list(providers) or [FakeProvider()]

    @hookimpl
    def register_payment_providers(self, app: KPay) -> list[PaymentProvider]:
        return self.providers

    @hookimpl
    def register_collections(self, app: KPay) -> list[str]:
        return []  # the fake keeps its state in memory
