"""Payouts: consultants withdraw their earnings through a provider with ``payouts``
(docs/money.md, "Payouts").

A payout is a record (``payouts``) with guarded states::

    requested -> [awaiting_approval -> requested ->] sending -> waiting_confirmation
              -> succeeded | failed | expired | cancelled

and three ledger movements, each once under its key:

- ``payout:<id>:reserve``  earnings:<user> -> payouts:in_flight   (when requested)
- ``payout:<id>:paid``     payouts:in_flight -> external:<provider> (the transfer succeeded)
- ``payout:<id>:return``   payouts:in_flight -> earnings:<user>   (failed, expired, cancelled)

A state change that moves money is written in one transaction with its movement, so
however many requests, notifies and jobs race, each movement happens once. A transfer
whose answer was lost is never sent again blindly: the ``money.payouts`` job asks the
provider (``query_transfer``) by the payout's ``out_bill_no`` first.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from kpay.core.errors import BadRequest, Conflict, NotFound, PaymentProviderError
from kpay.core.failpoints import failpoint
from kpay.core.money import accounts, withdrawable
from kpay.core.money.providers import PaymentProvider, TransferState
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from kpay.core.users import User

log = logging.getLogger("kpay.money.payouts")

PAYOUTS = "payouts"
IN_FLIGHT = "payouts:in_flight"
INDEXES = [IndexSpec.of(PAYOUTS, "user_id", ("created_at", -1)),
           IndexSpec.of(PAYOUTS, "status", "updated_at"),
           IndexSpec.of(PAYOUTS, "out_bill_no")]
#: States whose money is still reserved (in ``payouts:in_flight``).
OPEN = ("requested", "awaiting_approval", "sending", "waiting_confirmation")
#: States a payout is in while the provider has (or may have) its transfer.
SENT = ("sending", "waiting_confirmation")
#: States a payout is in before anything was sent.
UNSENT = ("requested", "awaiting_approval")
RETURNED = withdrawable.RETURNED
#: A payout left ``sending`` this long (a lost answer, a crash) is asked about.
IN_DOUBT_AFTER = timedelta(minutes=1)


def public(payout: dict[str, Any]) -> dict[str, Any]:
    """A payout as its consultant and the API see it."""
    return {"id": payout["_id"], "amount": payout["amount"], "status": payout["status"],
            "created_at": payout["created_at"], "updated_at": payout["updated_at"],
            "package_info": payout.get("package_info") or None,
            "confirm_params": payout.get("confirm_params") or {},
            "expires_at": payout.get("expires_at"), "reason": payout.get("reason", ""),
            "needs_approval": payout.get("needs_approval", False)}


class Payouts:
    """``app.money.payouts``."""

    def __init__(self, app: KPay) -> None:
        self.app = app
        self.collection = app.store[PAYOUTS]

    @property
    def settings(self) -> Any:
        return self.app.settings.payouts

    def provider(self) -> PaymentProvider | None:
        """The first registered provider that can pay out."""
        return next((p for p in self.app.money.providers() if p.capabilities.payouts), None)

    def provider_of(self, payout: dict[str, Any]) -> PaymentProvider:
        for provider in self.app.money.providers():
            if provider.identifier == payout["provider"]:
                return provider
        raise PaymentProviderError(f"payout provider {payout['provider']!r} is not loaded")

    async def get_for(self, user_id: str, payout_id: str) -> dict[str, Any]:
        payout = await self.collection.find_one({"_id": payout_id, "user_id": user_id})
        if payout is None:
            raise NotFound(f"no payout {payout_id}", code="payout_not_found")
        return payout

    async def summary(self, user_id: str,
                      session: AsyncClientSession | None = None) -> dict[str, Any]:
        """What ``GET /api/v1/earnings/summary`` shows (:func:`withdrawable.summary`)."""
        return await withdrawable.summary(self.app, user_id, session)

    # -- asking for a payout ----------------------------------------------------------

    async def request(self, user: User, amount: int, key: str | None = None) -> dict[str, Any]:
        """Reserve ``amount`` fen of the user's earnings for a payout and send it (or
        leave it for an admin above ``approval_above``). ``key`` (the client's
        Idempotency-Key) makes a retry return the first payout (``replayed``)."""
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise BadRequest("amount must be positive integer fen", code="invalid_amount",
                             field="amount")
        settings = self.settings
        if amount < settings.min_amount:
            raise BadRequest(f"the smallest payout is {settings.min_amount} fen",
                             code="payout_below_minimum", min_amount=settings.min_amount)
        payout_id = keyed_id(user.id, key) if key else "po" + uuid.uuid4().hex[:22]
        if key and (earlier := await self.collection.find_one({"_id": payout_id})):
            return await self._replay(earlier, amount)
        provider = self.provider()
        if provider is None:
            raise Conflict("no payment provider can pay out", code="payouts_unavailable")
        await self._check_requirements(provider, user.id, amount)
        openid = await self.app.users.openid(user.id)
        if not openid:
            raise Conflict("sign in with WeChat once before the first withdrawal",
                           code="openid_required")
        now = self.app.clock.now()
        needs_approval = settings.approval_above is not None and amount > settings.approval_above
        payout = {"_id": payout_id, "user_id": user.id, "amount": amount,
                  "status": "awaiting_approval" if needs_approval else "requested",
                  "needs_approval": needs_approval, "provider": provider.identifier,
                  "out_bill_no": provider.transfer_number(payout_id), "openid": openid,
                  "request_key": key, "created_at": now, "updated_at": now}

        async def reserve(session: AsyncClientSession) -> None:
            await self._check_and_guard(user.id, amount, session)
            await self.collection.insert_one(dict(payout), session=session)
            await self.app.money.ledger.post(
                f"payout:{payout_id}:reserve",
                [(accounts.earnings(user.id), -amount), (IN_FLIGHT, amount)],
                memo="提现", meta={"payout_id": payout_id}, session=session)

        try:
            await self.app.store.transaction(reserve)
        except DuplicateKeyError:
            raced = await self.collection.find_one({"_id": payout_id})
            if raced is None:
                raise
            return await self._replay(raced, amount)
        if needs_approval:
            return payout
        return await self.send(payout)

    async def _check_requirements(self, provider: PaymentProvider, user_id: str,
                                  amount: int) -> None:
        """What the provider needs of the receiver for this amount, before anything is
        reserved (``PaymentProvider.payout_requirements``)."""
        if ("real_name" in provider.payout_requirements(amount)
                and not await self.app.users.real_name(user_id)):
            raise Conflict("this withdrawal needs your real name (the payment provider "
                           "requires it for this amount): PUT /api/v1/payouts/real-name",
                           code="real_name_required")

    async def _check_and_guard(self, user_id: str, amount: int,
                               session: AsyncClientSession) -> None:
        """Inside the reserve transaction: refuse what the earnings cannot pay, with the
        guard in an update of the earnings account's own document
        (``Ledger.guard_debit``), which every debit of earnings writes, so racing
        requests are serialised by the database and never overdraw it."""
        seen = await self.summary(user_id, session)
        if seen["balance"] < 0:
            raise Conflict("your earnings are negative (a refund after a payout): later "
                           "earnings make up for it first", code="negative_earnings",
                           balance=seen["balance"])
        if amount > seen["withdrawable"]:
            raise Conflict(f"only {seen['withdrawable']} fen can be withdrawn now",
                           code="not_withdrawable", withdrawable=seen["withdrawable"],
                           pending=seen["pending"])
        if seen["withdrawn_today"] + amount > self.settings.max_per_day:
            left = max(0, self.settings.max_per_day - seen["withdrawn_today"])
            raise Conflict(f"at most {self.settings.max_per_day} fen a day; {left} left today",
                           code="payout_daily_limit", max_per_day=self.settings.max_per_day,
                           left_today=left)
        held = seen["balance"] - seen["withdrawable"]
        if not await self.app.money.ledger.guard_debit(
                session, accounts.earnings(user_id), amount, keep=held):
            raise Conflict("the earnings changed; try again", code="not_withdrawable",
                           withdrawable=0, pending=seen["pending"])

    async def _replay(self, earlier: dict[str, Any], amount: int) -> dict[str, Any]:
        """The payout a retried request made; one left ``requested`` (the first request
        died before sending it) is sent now rather than by the next job run."""
        if earlier["amount"] != amount:
            raise Conflict("this Idempotency-Key was used for another payout",
                           code="idempotency_conflict")
        if earlier["status"] == "requested":
            earlier = await self.send(earlier)
        return {**earlier, "replayed": True}

    # -- sending ----------------------------------------------------------------------

    async def send(self, payout: dict[str, Any]) -> dict[str, Any]:
        """Send a ``requested`` payout to its provider (once: the ``requested ->
        sending`` change is guarded) and book what it answers."""
        now = self.app.clock.now()
        claimed = await self.collection.find_one_and_update(
            {"_id": payout["_id"], "status": "requested"},
            {"$set": {"status": "sending", "sent_at": now, "updated_at": now}},
            return_document=ReturnDocument.AFTER)
        if claimed is None:
            return await self.collection.find_one({"_id": payout["_id"]}) or payout
        return await self._transfer(claimed)

    async def _transfer(self, payout: dict[str, Any]) -> dict[str, Any]:
        provider = self.provider_of(payout)
        try:
            state = await provider.transfer(payout, payout["openid"])
        except PaymentProviderError as e:
            # Nothing was sent: the money goes back.
            return await self.apply(payout["_id"], TransferState(
                "failed", payout["out_bill_no"], payout["amount"], reason=str(e)))
        except Exception as e:
            # The outcome is unknown: stay ``sending``; the job asks before any resend.
            log.warning("payout %s: transfer answer lost (%s); will query", payout["_id"], e)
            await self.collection.update_one({"_id": payout["_id"]},
                                             {"$set": {"in_doubt": True, "error": str(e)}})
            return await self.collection.find_one({"_id": payout["_id"]}) or payout
        failpoint("payouts.after_transfer")
        return await self.apply(payout["_id"], state)

    # -- booking what the provider says -----------------------------------------------

    async def apply(self, payout_id: str, state: TransferState,
                    leaving: tuple[str, ...] = SENT) -> dict[str, Any]:
        """Book a transfer state (from the transfer's answer, a query, a notify or the
        dev confirm). Each change is guarded by the states it may leave (``leaving``;
        by default the sent ones, where only the provider's word moves a payout), so a
        repeat or a race books nothing twice. Returns the payout as it is now."""
        payout, _ = await self._apply(payout_id, state, leaving)
        return payout

    async def _apply(self, payout_id: str, state: TransferState,
                     leaving: tuple[str, ...] = SENT) -> tuple[dict[str, Any], bool]:
        now = self.app.clock.now()
        booked = False
        if state.status == "waiting_confirmation":
            changed = await self.collection.find_one_and_update(
                {"_id": payout_id, "status": "sending"},
                {"$set": {"status": "waiting_confirmation", "package_info": state.package_info,
                          "confirm_params": state.confirm_params,
                          "transfer_bill_no": state.transfer_bill_no, "in_doubt": False,
                          "expires_at": now + timedelta(hours=self.settings.expiry_hours),
                          "updated_at": now}},
                return_document=ReturnDocument.AFTER)
            booked = changed is not None
        elif state.status in ("succeeded", *RETURNED):
            booked = await self.app.store.transaction(
                lambda s: self._finish(s, payout_id, state, leaving, now))
        payout = await self.collection.find_one({"_id": payout_id})
        if payout is None:
            raise NotFound(f"no payout {payout_id}", code="payout_not_found")
        if booked:
            await self._tell(payout)
        return payout, booked

    async def _tell(self, payout: dict[str, Any]) -> None:
        """Tell the consultant a payout changed: the console's figures, and a saved
        notification (kpay/core/notifications.py words the payout kinds)."""
        user_id = payout["user_id"]
        await self.app.money.announce_earnings([accounts.earnings(user_id)])
        kind = {"waiting_confirmation": "payout_waiting_confirmation",
                "succeeded": "payout_succeeded"}.get(payout["status"], "payout_returned")
        await self.app.tell_user(user_id, kind, {"payout_id": payout["_id"],
                                                 "amount": payout["amount"],
                                                 "status": payout["status"]})

    async def _finish(self, session: AsyncClientSession, payout_id: str,
                      state: TransferState, leaving: tuple[str, ...], now: datetime) -> bool:
        """A payout in one of ``leaving`` ends ``state.status``, its money paid out or
        returned, in one transaction; False if it was not in those states."""
        change = {"status": state.status, "ended_at": now, "updated_at": now,
                  "in_doubt": False, "reason": state.reason or state.provider_status}
        if state.transfer_bill_no:
            change["transfer_bill_no"] = state.transfer_bill_no
        ended = await self.collection.find_one_and_update(
            {"_id": payout_id, "status": {"$in": list(leaving)}}, {"$set": change},
            session=session, return_document=ReturnDocument.AFTER)
        if ended is None:
            return False
        amount = ended["amount"]
        if state.status == "succeeded":
            await self.app.money.ledger.post(
                f"payout:{payout_id}:paid",
                [(IN_FLIGHT, -amount), (accounts.external(ended["provider"]), amount)],
                memo="提现到账", meta={"payout_id": payout_id}, session=session)
        else:
            await self.app.money.ledger.post(
                f"payout:{payout_id}:return",
                [(IN_FLIGHT, -amount), (accounts.earnings(ended["user_id"]), amount)],
                memo="提现退回", meta={"payout_id": payout_id}, session=session)
        return True

    async def apply_notify(self, provider: PaymentProvider,
                           state: TransferState) -> tuple[dict[str, Any], bool]:
        """Book a believed transfer notify: only a payout of this provider, only its
        amount. Returns the payout and whether this notify changed it."""
        payout = await self.collection.find_one({"out_bill_no": state.out_bill_no,
                                                 "provider": provider.identifier})
        if payout is None:
            raise NotFound(f"no payout {state.out_bill_no!r}", code="unknown_payout")
        if state.amount and state.amount != payout["amount"]:
            raise Conflict("the transferred amount is not the payout's", code="amount_mismatch")
        return await self._apply(payout["_id"], state)

    # -- people ---------------------------------------------------------------------

    async def cancel(self, payout: dict[str, Any], reason: str) -> dict[str, Any]:
        """Cancel before the money left: not yet sent (no provider call), or waiting for
        the receiver's confirmation (the provider withdraws it first). Each is guarded
        by the state it was seen in: one sent meanwhile is not returned unasked."""
        if payout["status"] == "waiting_confirmation":
            await self.provider_of(payout).cancel_transfer(payout)
            leaving: tuple[str, ...] = ("waiting_confirmation",)
        elif payout["status"] in UNSENT:
            leaving = UNSENT
        else:
            raise Conflict(f"a {payout['status']} payout cannot be cancelled",
                           code="payout_not_cancellable", status_now=payout["status"])
        state = TransferState("cancelled", payout["out_bill_no"], payout["amount"],
                              reason=reason)
        done = await self.apply(payout["_id"], state, leaving)
        if done["status"] in OPEN:
            raise Conflict("the payout moved on meanwhile; try again",
                           code="payout_not_cancellable", status_now=done["status"])
        return done

    async def approve(self, payout_id: str, admin_id: str, reason: str,
                      source: str) -> dict[str, Any]:
        """An admin lets a payout above ``approval_above`` go (audited), and it is sent."""
        now = self.app.clock.now()
        approved = await self.collection.find_one_and_update(
            {"_id": payout_id, "status": "awaiting_approval"},
            {"$set": {"status": "requested", "approved_by": admin_id, "approved_at": now,
                      "updated_at": now}}, return_document=ReturnDocument.AFTER)
        if approved is None:
            raise await self._not_awaiting(payout_id)
        await self.app.audit.record(admin_id, "payout.approve", f"payout:{payout_id}",
                                    reason=reason, source=source, amount=approved["amount"],
                                    user_id=approved["user_id"])
        return await self.send(approved)

    async def reject(self, payout_id: str, admin_id: str, reason: str,
                     source: str) -> dict[str, Any]:
        """An admin refuses a payout waiting for approval: it is cancelled (audited) and
        its money returns to the earnings."""
        payout = await self.collection.find_one({"_id": payout_id})
        if payout is None or payout["status"] != "awaiting_approval":
            raise await self._not_awaiting(payout_id)
        done = await self.apply(payout_id, TransferState(
            "cancelled", payout["out_bill_no"], payout["amount"],
            reason=f"rejected: {reason}" if reason else "rejected"), ("awaiting_approval",))
        if done["status"] != "cancelled":
            raise await self._not_awaiting(payout_id)
        await self.app.audit.record(admin_id, "payout.reject", f"payout:{payout_id}",
                                    reason=reason, source=source, amount=payout["amount"],
                                    user_id=payout["user_id"])
        return done

    async def _not_awaiting(self, payout_id: str) -> Exception:
        payout = await self.collection.find_one({"_id": payout_id}, {"status": 1})
        if payout is None:
            return NotFound(f"no payout {payout_id}", code="payout_not_found")
        return Conflict(f"the payout is {payout['status']}, not awaiting approval",
                        code="payout_not_awaiting_approval", status_now=payout["status"])

    # -- the job ------------------------------------------------------------------------

    async def sweep(self) -> int:
        """``money.payouts`` (every minute): send the requested payouts (approved, or
        left by a crash), ask about the ones in doubt, expire the unconfirmed ones. Each
        payout on its own: one failing goes on the attention list, the rest go on."""
        now = self.app.clock.now()
        done = 0
        query = {"$or": [
            {"status": "requested"},
            {"status": "sending", "sent_at": {"$lte": now - IN_DOUBT_AFTER}},
            {"status": "waiting_confirmation", "expires_at": {"$lte": now}}]}
        async for payout in self.collection.find(query).sort("updated_at", 1).limit(200):
            async with self.app.attention.isolate("money.payouts", f"payout:{payout['_id']}"):
                try:
                    await self._sweep_one(payout, now)
                    done += 1
                except (PaymentProviderError, OSError) as e:
                    log.warning("payout %s: provider unreachable (%s); next run",
                                payout["_id"], e)
        return done

    async def _sweep_one(self, payout: dict[str, Any], now: datetime) -> None:
        if payout["status"] == "requested":
            await self.send(payout)
            return
        provider = self.provider_of(payout)
        # Query before retry: the provider may have the transfer already.
        state = await provider.query_transfer(payout)
        if payout["status"] == "sending" and state.status == "not_found":
            # It never arrived: send it again, under the same out_bill_no.
            await self.collection.update_one({"_id": payout["_id"], "status": "sending"},
                                             {"$set": {"sent_at": now}})
            await self._transfer(payout)
            return
        if state.status not in ("pending", "not_found"):
            payout = await self.apply(payout["_id"], state)
        if payout["status"] == "waiting_confirmation" and payout["expires_at"] <= now:
            await provider.cancel_transfer(payout)
            await self.apply(payout["_id"], TransferState(
                "expired", payout["out_bill_no"], payout["amount"], reason="not confirmed"),
                ("waiting_confirmation",))


def keyed_id(user_id: str, key: str) -> str:
    """The payout id for a client's Idempotency-Key: one payout per user and key."""
    return "po" + hashlib.sha256(f"payout\n{user_id}\n{key}".encode()).hexdigest()[:22]
