"""Shared set-up of the payout tests: the money test plugin with a fake provider that
pays out, a consultant with an openid, and earnings that are already withdrawable."""

from __future__ import annotations

from typing import Any

from money_fakes import MoneyTestPlugin

from kpay.core.money import accounts
from kpay.testing import FakePayoutProvider

DAY = 24 * 3600
#: The payout tests' settings: no rate limits, tokens that outlive the clock jumps.
OVERRIDES = {"plugins": {"enabled": []}, "money": {"topup_max": 100_000},
             "limits": {"enabled": False}, "auth": {"token_ttl_seconds": 90 * 24 * 3600}}


def payout_plugin() -> MoneyTestPlugin:
    plugin = MoneyTestPlugin()
    plugin.provider = FakePayoutProvider("fakepay", ("native", "jsapi", "mweb"))
    return plugin


async def give_openid(app: Any, user_id: str) -> None:
    await app.store["users"].update_one({"_id": user_id}, {"$set": {"openid": f"o-{user_id}"}})


async def earn(app: Any, user_id: str, amount: int, key: str) -> int:
    """Credit ``user_id`` with ``amount`` fen of earnings (as a sale would, fee and all);
    the earner's part."""
    credits = app.money.earnings_credits(amount, user_id)
    await app.money.ledger.post(key, [("external:test", -amount), *credits], "课程")
    return dict(credits)[accounts.earnings(user_id)]


async def withdrawable_consultant(app: Any, api: Any, clock: Any, user_id: str = "carol",
                                  earned: int = 10_000) -> tuple[str, int]:
    """A logged-in consultant with an openid and ``earned`` fen of earnings (before the
    fee) past the hold: (token, the earnings balance)."""
    token = await api.login(user_id, "consultant")
    await give_openid(app, user_id)
    part = await earn(app, user_id, earned, f"test:earn:{user_id}")
    await clock.advance(app.settings.payouts.hold_days * DAY + 60)
    return token, part


async def withdraw(api: Any, token: str, amount: int, key: str | None = None) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key else None
    return await api.request("POST", "/api/v1/payouts", {"amount": amount}, token,
                             headers=headers)


async def payout_of(app: Any, payout_id: str) -> dict[str, Any]:
    return await app.money.payouts.collection.find_one({"_id": payout_id})


async def balances(app: Any, user_id: str) -> tuple[int, int, int]:
    """(earnings, payouts in flight, external:fakepay) balances."""
    ledger = app.money.ledger
    return (await ledger.balance(accounts.earnings(user_id)),
            await ledger.balance("payouts:in_flight"),
            await ledger.balance("external:fakepay"))
