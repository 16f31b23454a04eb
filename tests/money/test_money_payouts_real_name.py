"""The payouts core asks the provider what it needs of the receiver before anything is
reserved (``PaymentProvider.payout_requirements``, docs/money.md "Payouts"): a provider
that needs a real name from 2,000 yuan refuses a consultant without one with 409
``real_name_required`` (no payout, nothing posted), even under racing requests, and
sends once the name is set. The masking of names (``kpay.core.users.mask_name``)."""

from __future__ import annotations

import asyncio

import pytest
from payout_helpers import balances, withdraw, withdrawable_consultant

from kpay.core.users import mask_name
from kpay.testing import FakePayoutProvider, assert_books_balanced

BIG = 200_000


class RealNameProvider(FakePayoutProvider):
    def payout_requirements(self, amount: int) -> set[str]:
        return {"real_name"} if amount >= BIG else set()


pytestmark = pytest.mark.payouts  # the fake payout provider and settings: conftest.py


@pytest.fixture
def money_plugin(money_plugin):
    """conftest.py's payout plugin, its provider asking a real name for big amounts."""
    money_plugin.provider = RealNameProvider("fakepay", ("native", "jsapi", "mweb"))
    return money_plugin


@pytest.mark.gen_test(timeout=30)
async def test_no_real_name_no_reservation_even_when_racing(api, kpay_app, clock,
                                                           money_plugin):
    token, earned = await withdrawable_consultant(kpay_app, api, clock, earned=1_000_000)
    answers = await asyncio.gather(*(withdraw(api, token, BIG, key=f"k{i % 2}")
                                     for i in range(6)))
    assert {(s, b["error"]["code"]) for s, b in answers} == {(409, "real_name_required")}
    assert await kpay_app.money.payouts.collection.count_documents({}) == 0
    assert await balances(kpay_app, "carol") == (earned, 0, 0)
    assert money_plugin.provider.sends == {}
    await assert_books_balanced(kpay_app)

    await kpay_app.users.set_real_name("carol", "Anna·Lee")
    status, body = await withdraw(api, token, BIG, key="k0")
    assert status == 201 and body["payout"]["status"] == "waiting_confirmation", body
    status, again = await withdraw(api, token, BIG, key="k0")  # a replay: the same payout
    assert status == 201 and again["payout"]["id"] == body["payout"]["id"]
    assert await balances(kpay_app, "carol") == (earned - BIG, BIG, 0)
    assert list(money_plugin.provider.sends.values()) == [1]
    await assert_books_balanced(kpay_app)


@pytest.mark.parametrize(("name", "masked"), [("张三", "张*"), ("张三丰", "张*丰"),
                                              ("欧阳·娜娜", "欧***娜"), ("Anna·Lee", "A******e")])
def test_names_are_shown_masked(name, masked):
    assert mask_name(name) == masked
