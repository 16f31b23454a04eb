"""WeChat Pay 商家转账 (API v3, the version of 2025-01-15): the payout half of the v3
provider (docs/wechat_pay.md "商家转账"; the interface: docs/money.md "Payouts").

A transfer is created under the payout's ``out_bill_no`` and, as a rule, waits for the
receiver (``WAIT_USER_CONFIRM``, a ``package_info`` for ``wx.requestMerchantTransfer``).
WeChat treats a repeated ``out_bill_no`` with the same fields as the same bill, so a
create sent again never pays twice. Only a refusal WeChat surely acted on ends in
``PaymentProviderError`` (nothing sent); a lost or unbelieved answer raises anything
else, and the core queries before it sends again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from kpay.core.errors import PaymentProviderError
from kpay.core.money.providers import TransferState
from plugins.wechat_pay import v3_signing
from plugins.wechat_pay.provider import refused
from plugins.wechat_pay.v3_client import V3NoAnswer, V3Refused

if TYPE_CHECKING:
    from plugins.wechat_pay.v3_client import V3Merchant, V3Runtime

TRANSFER_BILLS = "v3/fund-app/mch-transfer/transfer-bills"
# WeChat's bill states in the core's words; ACCEPTED, PROCESSING, TRANSFERING and
# CANCELING are still on their way: "pending".
TRANSFER_STATES = {"WAIT_USER_CONFIRM": "waiting_confirmation", "SUCCESS": "succeeded",
                   "FAIL": "failed", "CANCELLED": "cancelled"}
# WeChat closes a bill its receiver has not confirmed 24 hours after it was made.
EXPIRY = timedelta(hours=24)
# From 2,000 yuan WeChat needs the receiver's real name (user_name, encrypted with
# WeChat's public key); the core asks for it up front (payout_requirements).
REAL_NAME_FROM = 200_000
# The create errors after which WeChat surely made no bill (anything else: unknown).
TRANSFER_REFUSALS = ("PARAM_ERROR", "INVALID_REQUEST", "NOT_ENOUGH", "NO_AUTH", "SIGN_ERROR",
                     "APPID_MCHID_NOT_MATCH", "OPENID_INVALID", "USER_ACCOUNT_ABNORMAL",
                     "ACCOUNT_FROZEN", "ACCOUNT_NOT_VERIFIED", "QUOTA_EXCEED")
# WeChat's out_bill_no: letters and digits, at most 32.
BILL_NUMBER = re.compile(r"^[A-Za-z0-9]{1,32}$")


def transfer_number(payout_id: str) -> str:
    """The payout id when WeChat accepts it as an ``out_bill_no``, else a stable hash."""
    if BILL_NUMBER.match(payout_id):
        return payout_id
    return "b" + hashlib.sha256(payout_id.encode()).hexdigest()[:31]


def closed_unconfirmed(data: Mapping[str, Any]) -> bool:
    """A CANCELLED bill closed a day or more after it was made: WeChat's own expiry (or
    kpay's cancel at expiry), not a cancel by the receiver's choice; False when the
    times are not given."""
    try:
        made = datetime.fromisoformat(str(data["create_time"]))
        closed = datetime.fromisoformat(str(data["update_time"]))
    except (KeyError, ValueError):
        return False
    return closed - made >= EXPIRY


class MerchantTransfers:
    """The payout steps of :class:`~plugins.wechat_pay.v3_provider.WeChatPayV3Provider`
    (mixed in; the provider brings ``runtime``, ``merchant``, ``_call`` and the
    callback checks ``_open``/``_remember`` it shares with payments)."""

    runtime: V3Runtime
    merchant: V3Merchant

    def transfer_number(self, payout_id: str) -> str:
        return transfer_number(payout_id)

    def payout_requirements(self, amount: int) -> set[str]:
        return {"real_name"} if amount >= REAL_NAME_FROM else set()

    async def transfer(self, payout: dict[str, Any], openid: str) -> TransferState:
        answer = await self._create_bill(payout, openid)
        return self.bill_state(answer, payout)

    async def _real_name(self, payout: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """The receiver's name encrypted for WeChat and the header naming the key; the
        core checked it up front, so a missing one (removed meanwhile) is a refusal
        before anything is sent."""
        name = await self.runtime.wechat.app.users.real_name(payout["user_id"])
        if not name:
            raise PaymentProviderError(
                "WeChat Pay needs the receiver's real name for a transfer of 2,000 yuan or "
                "more: set it (PUT /api/v1/payouts/real-name) and withdraw again",
                err_code="real_name_required")
        serial, key = self.merchant.platform.encryption_key()
        encrypted = await self.runtime.wechat.call(v3_signing.encrypt_sensitive, key, name)
        return encrypted, {v3_signing.SERIAL: serial}

    async def _create_bill(self, payout: dict[str, Any], openid: str) -> dict[str, Any]:
        s, m = self.runtime.wechat.settings, self.merchant
        headers: dict[str, str] = {}
        body: dict[str, Any] = {
            "appid": m.appid, "out_bill_no": payout["out_bill_no"],
            "transfer_scene_id": s.transfer_scene_id, "openid": openid,
            "transfer_amount": payout["amount"], "transfer_remark": s.transfer_remark,
            "notify_url": self.runtime.transfer_notify_url(),
            "transfer_scene_report_infos": [
                {"info_type": kind, "info_content": content}
                for kind, content in s.transfer_scene_report_infos.items()]}
        if s.transfer_user_recv_perception:
            body["user_recv_perception"] = s.transfer_user_recv_perception
        if self.payout_requirements(payout["amount"]):
            body["user_name"], headers = await self._real_name(payout)
        try:
            return await self.runtime.client.request("POST", TRANSFER_BILLS, body, headers)
        except V3Refused as e:
            if e.code in TRANSFER_REFUSALS:
                raise PaymentProviderError(str(e), err_code=e.code) from None
            # SYSTEM_ERROR, FREQUENCY_LIMITED, ...: whether a bill was made is unknown.
            raise V3NoAnswer(f"transfer outcome unknown: {e}") from None

    async def query_transfer(self, payout: dict[str, Any]) -> TransferState:
        number = payout["out_bill_no"]
        try:
            data = await self._call("GET", f"{TRANSFER_BILLS}/out-bill-no/{number}")
        except PaymentProviderError as e:
            if e.details.get("err_code") == "NOT_FOUND":
                return TransferState("not_found", number)
            raise
        state = self.bill_state(data, payout)
        if state.status == "waiting_confirmation" and not state.package_info:
            # A query does not give the package_info. The payout keeps the one its
            # create answer gave; when that answer was lost, creating the same bill
            # again (same out_bill_no and fields) answers it and makes no second bill.
            if payout.get("package_info"):
                return replace(state, package_info=payout["package_info"])
            try:
                again = await self._create_bill(payout, payout["openid"])
            except V3NoAnswer as e:
                raise PaymentProviderError(str(e)) from None
            state = self.bill_state(again, payout)
        return state

    async def cancel_transfer(self, payout: dict[str, Any]) -> None:
        try:
            data = await self._call(
                "POST", f"{TRANSFER_BILLS}/out-bill-no/{payout['out_bill_no']}/cancel")
        except PaymentProviderError as e:
            if e.details.get("err_code") == "NOT_FOUND":
                return  # never reached WeChat: nothing to cancel there
            raise  # confirmed meanwhile (and the rest): the core queries again
        if data.get("state") not in ("CANCELING", "CANCELLED"):
            raise PaymentProviderError(f"WeChat Pay did not cancel the transfer "
                                       f"({data.get('state')!r})")

    async def handle_transfer_notify(self, body: bytes,
                                     headers: Mapping[str, str]) -> TransferState:
        notification_id, booked, data = await self._open(body, headers, "transfer")
        if booked is not None:
            return TransferState(**booked)
        amount = data.get("transfer_amount")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise refused("amount_mismatch", f"transfer_amount {amount!r} is not fen", data)
        state = self.bill_state(data)
        said = {"status": state.status, "out_bill_no": state.out_bill_no, "amount": amount,
                "transfer_bill_no": state.transfer_bill_no,
                "provider_status": state.provider_status, "reason": state.reason}
        await self._remember(notification_id, "transfer", said)
        return TransferState(**said, raw=data)

    def confirm_transfer(self, out_bill_no: str) -> None:
        """Dev mode on the local fake: the receiver confirms (the core's dev confirm
        route calls it); against the real WeChat only the receiver can."""
        if self.runtime.fake is not None:
            self.runtime.fake.transfers.confirm(out_bill_no)

    def bill_state(self, data: Mapping[str, Any],
                   payout: Mapping[str, Any] | None = None) -> TransferState:
        """A bill as WeChat reports it (create, query, callback) in the core's words;
        with ``payout``, one that is not the payout's is not believed."""
        said = str(data.get("state", ""))
        status = TRANSFER_STATES.get(said, "pending")
        number = str(data.get("out_bill_no", ""))
        amount = data.get("transfer_amount")
        if payout is not None and (number != payout["out_bill_no"] or (
                amount is not None and amount != payout["amount"])):
            raise PaymentProviderError("WeChat Pay answered about another transfer")
        if status == "cancelled" and closed_unconfirmed(data):
            status = "expired"
        waiting = status == "waiting_confirmation"
        m = self.merchant
        return TransferState(
            status, number, amount if isinstance(amount, int) else 0,
            package_info=str(data.get("package_info", "")) if waiting else "",
            transfer_bill_no=str(data.get("transfer_bill_no", "")), provider_status=said,
            reason=str(data.get("fail_reason", "")), raw=dict(data),
            confirm_params={"mchId": m.mchid, "appId": m.appid} if waiting else {})
