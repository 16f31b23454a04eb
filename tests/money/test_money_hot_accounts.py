"""Hot accounts (docs/money.md, "Hot accounts"): many orders crediting one seller and
the platform at once all succeed with exact balances, because credits of non-wallet
accounts are spread over several balance documents; the payout guard still holds
across them; replays and reconcile see the summed balance. The books balance after
every test (tests/money/conftest.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from money_fakes import CATALOG, SELLER
from payout_helpers import earn, give_openid, withdraw

from kpay.core.auth import User
from kpay.core.money import accounts
from kpay.core.money.providers import RequestInfo
from kpay.core.money.reconcile import reconcile

BUYERS = 50
DAY = 24 * 3600


pytestmark = pytest.mark.payouts  # the fake payout provider and settings: conftest.py


async def documents_of(app: Any, account: str) -> list[dict[str, Any]]:
    return [d async for d in app.store["accounts"].find(
        {"_id": {"$in": accounts.balance_documents(account)}})]


@pytest.mark.gen_test(timeout=120)
async def test_fifty_concurrent_orders_of_one_seller_all_succeed(kpay_app):
    price = CATALOG["g100"]
    ledger = kpay_app.money.ledger
    await ledger.post("test:fund", [("external:test", -price * BUYERS)]
                      + [(accounts.wallet(f"b{i}"), price) for i in range(BUYERS)], "fund")

    async def buy(i: int) -> dict[str, Any]:
        order, _ = await kpay_app.money.orders.create(
            User(f"b{i}", "student"), {"kind": "test_gadget", "sku": "g100"}, "wallet",
            RequestInfo("127.0.0.1"))
        return order

    orders = await asyncio.gather(*(buy(i) for i in range(BUYERS)))
    assert {o["status"] for o in orders} == {"fulfilled"}
    earned, fee = accounts.split_fee(price, kpay_app.settings.money.platform_fee_bps)
    assert await ledger.balance(accounts.earnings(SELLER)) == earned * BUYERS
    assert await ledger.balance(accounts.PLATFORM_REVENUE) == fee * BUYERS
    assert {await ledger.balance(accounts.wallet(f"b{i}")) for i in range(BUYERS)} == {0}
    # The credits did not all write one document: that is what stops the conflicts.
    assert len(await documents_of(kpay_app, accounts.earnings(SELLER))) > 1
    assert len(await documents_of(kpay_app, accounts.PLATFORM_REVENUE)) > 1


@pytest.mark.gen_test(timeout=60)
async def test_the_payout_guard_sums_every_balance_document(api, kpay_app, clock):
    token = await api.login("carol", "consultant")
    await give_openid(kpay_app, "carol")
    total = 0
    for n in range(12):
        total += await earn(kpay_app, "carol", 1000, f"test:earn:{n}")
    assert len(await documents_of(kpay_app, accounts.earnings("carol"))) > 1
    await clock.advance(kpay_app.settings.payouts.hold_days * DAY + 60)

    status, body = await withdraw(api, token, total + 1)
    assert status == 409 and body["error"]["code"] == "not_withdrawable", body
    status, body = await withdraw(api, token, total)
    assert status == 201, body
    assert await kpay_app.money.ledger.balance(accounts.earnings("carol")) == 0
    status, body = await withdraw(api, token, 10)
    assert status == 409 and body["error"]["code"] == "not_withdrawable", body


@pytest.mark.gen_test(timeout=60)
async def test_racing_payouts_never_overdraw_spread_earnings(api, kpay_app, clock):
    token = await api.login("carol", "consultant")
    await give_openid(kpay_app, "carol")
    total = 0
    for n in range(8):
        total += await earn(kpay_app, "carol", 1000, f"test:earn:{n}")
    await clock.advance(kpay_app.settings.payouts.hold_days * DAY + 60)
    # Each asks for two thirds: only one can be paid, however they interleave.
    part = total * 2 // 3
    answers = await asyncio.gather(*(withdraw(api, token, part, key=f"race-{n}")
                                     for n in range(6)))
    assert sorted(status for status, _ in answers) == [201] + [409] * 5, answers
    assert await kpay_app.money.ledger.balance(accounts.earnings("carol")) == total - part
    assert await kpay_app.money.ledger.balance("payouts:in_flight") == part


@pytest.mark.gen_test(timeout=60)
async def test_a_key_posted_by_many_at_once_is_booked_once(kpay_app):
    ledger = kpay_app.money.ledger
    postings = [("external:test", -300), (accounts.PLATFORM_REVENUE, 300)]
    done = await asyncio.gather(*(ledger.post("test:once", postings, "once")
                                  for _ in range(10)))
    assert sum(not t.replayed for t in done) == 1
    assert await ledger.balance(accounts.PLATFORM_REVENUE) == 300
    assert await kpay_app.store["ledger"].count_documents({"_id": "test:once"}) == 1


@pytest.mark.gen_test
@pytest.mark.books_may_break
async def test_reconcile_sums_the_documents_of_an_account(kpay_app):
    ledger = kpay_app.money.ledger
    for n in range(6):
        await ledger.post(f"test:fee:{n}", [("external:test", -50),
                                            (accounts.PLATFORM_REVENUE, 50)], "fee")
    report = await reconcile(kpay_app.store.db, kpay_app.clock.now())
    assert report.clean, report.text()
    assert report.accounts == 2  # two accounts, however many documents hold them
    shard = (await documents_of(kpay_app, accounts.PLATFORM_REVENUE))[-1]["_id"]
    await kpay_app.store.db["accounts"].update_one({"_id": shard}, {"$inc": {"balance": 1}})
    report = await reconcile(kpay_app.store.db, kpay_app.clock.now())
    assert "account platform:revenue: balance 301 but postings sum to 300" in report.text()
