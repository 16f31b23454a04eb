"""The fake payment provider kpay's test suites share (``kpay.testing`` exports it):
one configurable stand-in for an outside payment system, notifies included."""

from __future__ import annotations

import hashlib
import hmac
import json
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
