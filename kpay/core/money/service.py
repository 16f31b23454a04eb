"""The money service every plugin reaches as ``app.money``."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from kpay.core.errors import PaymentProviderError
from kpay.core.money import accounts
from kpay.core.money import ledger as ledger_module
from kpay.core.money import orders as orders_module
from kpay.core.money import payouts as payouts_module
from kpay.core.money.accounts import earnings_credits
from kpay.core.money.adjustments import Adjustments
from kpay.core.money.kinds import OrderKind, WalletTopup
from kpay.core.money.ledger import Ledger
from kpay.core.money.notify import PaymentNotifies
from kpay.core.money.orders import Orders, fulfillable
from kpay.core.money.payouts import Payouts
from kpay.core.money.providers import PaymentProvider
from kpay.core.scheduler import PeriodicJob
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.money")

# A paid order is normally fulfilled within its request; the job waits this long so it
# does not race the request that is still fulfilling.
FULFIL_AFTER = timedelta(minutes=1)


class MoneyService:
    def __init__(self, app: KPay) -> None:
        self.app = app
        self.ledger = Ledger(app)
        self.orders = Orders(app)
        self.adjustments = Adjustments(app)
        self.notifies = PaymentNotifies(app)
        self.payouts = Payouts(app)

    def register(self, kinds: list[OrderKind], providers: list[PaymentProvider]) -> None:
        topup = WalletTopup(tuple(c for p in providers if p.creates_orders for c in p.channels))
        self.orders.register([topup, *kinds], providers)
        for provider in providers:
            if not provider.url_name:
                # Docs: docs/plugins.md, "Migrating a payment provider".
                message = (f"payment provider {provider.identifier!r} declares no url_name: "
                           "its plugin's own notify routes are deprecated and go in the next "
                           "release; declare url_name and let the core serve "
                           "/api/v1/pay/<url_name>/notify")
                warnings.warn(message, DeprecationWarning, stacklevel=2)
                log.warning("%s", message)

    async def announce_earnings(self, accounts_touched: Iterable[str]) -> None:
        """Event ``earnings_changed`` (no data, not saved) on ``user:<id>`` of each user
        whose ``earnings:<id>`` is in ``accounts_touched``: the console refetches its
        figures (docs/websocket.md). Call it after the change is committed; a failed
        publish is logged, never raised: the money already moved."""
        # Committed money is what the dashboards' rollups fold in (docs/analytics.md).
        self.app.rollups.kick()
        users = sorted({account.partition(":")[2] for account in accounts_touched
                        if accounts.kind_of(account) == "earnings"})
        for user_id in users:
            try:
                await self.app.publish(f"user:{user_id}", "earnings_changed", {})
            except Exception:
                log.warning("earnings_changed for %s not published", user_id, exc_info=True)

    def notify_providers(self) -> list[PaymentProvider]:
        """The registered providers whose notify routes the core serves (by url_name)."""
        return [p for p in self.providers() if p.url_name]

    def providers(self) -> list[PaymentProvider]:
        """Each registered provider once (answering-only ones too), in registration
        order."""
        return list(self.orders.by_identifier.values())

    def indexes(self) -> list[IndexSpec]:
        return ledger_module.INDEXES + orders_module.INDEXES + payouts_module.INDEXES

    def jobs(self) -> list[PeriodicJob]:
        return [PeriodicJob("money.settle_pending", self.settle_pending, 60),
                PeriodicJob("money.fulfil_paid", self.fulfil_paid, 60),
                PeriodicJob("money.payouts", self.payouts.sweep, 60)]

    def earnings_credits(self, amount: int, earner: str) -> list[tuple[str, int]]:
        """Postings paying ``earner`` and the platform fee from config."""
        return earnings_credits(amount, earner, self.app.settings.money.platform_fee_bps)

    async def settle_pending(self) -> int:
        """Ask each provider about its pending orders older than its ``settle_after``:
        book the paid ones, close the expired ones. Safe to race a notify or another
        node: ``mark_paid`` is exactly-once and ``close`` is guarded by the state."""
        settled = 0
        for provider in self.providers():
            settled += await self._settle_provider(provider)
        return settled

    async def _settle_provider(self, provider: PaymentProvider) -> int:
        now = self.app.clock.now()
        settled = 0
        # The orders it started, and those whose payment never started on its channels.
        claimed = [c for c, p in self.orders.providers.items() if p is provider]
        cursor = self.orders.collection.find(
            {"status": "pending", "created_at": {"$lte": now - provider.settle_after},
             "$or": [{"provider": provider.identifier},
                     {"provider": None, "channel": {"$in": claimed}}]}
        ).sort("created_at", 1).limit(500)
        async for order in cursor:
            # One order's trouble must not stop the sweep. The provider being unreachable
            # is only logged (the next run asks again); anything else is a bug that
            # waits on the attention list.
            async with self.app.attention.isolate("money.settle_pending",
                                                  f"order:{order['_id']}"):
                try:
                    if await self._settle_one(provider, order, now):
                        settled += 1
                except (PaymentProviderError, OSError) as e:
                    log.warning("could not settle order %s yet: %s", order["_id"], e)
        return settled

    async def _settle_one(self, provider: PaymentProvider, order: dict, now: datetime) -> bool:
        state = await provider.query(order)
        if state.status == "paid":
            await self.orders.mark_paid(order["_id"], state.amount,
                                        source=accounts.external(provider.identifier),
                                        transaction_id=state.transaction_id, via="query")
            return True
        if state.status == "closed":
            await self.orders.close(order["_id"], "closed_by_provider")
            return True
        if order["expires_at"] <= now:
            # Close outside first: if the payer paid meanwhile, the provider refuses
            # (PaymentProviderError) and the order stays pending for the next query.
            await provider.close(order)
            await self.orders.close(order["_id"], "expired")
            return True
        return False

    async def fulfil_paid(self) -> int:
        """Finish orders left paid but not fulfilled (a crash or a failing fulfilment).
        ``Orders.fulfil`` takes a lease, so this never runs a kind's fulfil twice at once."""
        now = self.app.clock.now()
        count = 0
        async for order in self.orders.collection.find(
                {"paid_at": {"$lte": now - FULFIL_AFTER}, **fulfillable(now)}
        ).sort("paid_at", 1).limit(500):
            async with self.app.attention.isolate("money.fulfil_paid", f"order:{order['_id']}"):
                done = await self.orders.fulfil(order)
                if done["status"] == "fulfilled":
                    count += 1
        # Given up but still paid: the refund did not finish (a crash, a failure).
        async for order in self.orders.collection.find(
                {"status": "paid", "fulfil_gave_up": True,
                 "fulfil_retry_at": {"$lte": now}}).limit(100):
            async with self.app.attention.isolate("money.fulfil_paid", f"order:{order['_id']}"):
                await self.orders.give_up_fulfilment(order, order.get("fulfil_error") or "")
        return count
