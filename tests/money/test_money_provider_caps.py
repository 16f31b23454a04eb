"""Provider capabilities: a refund to the original channel that the provider cannot make
is refused with a 409 before anything is reserved; the wallet still takes it."""

from __future__ import annotations

from typing import Any

import pytest
from money_fakes import MoneyTestPlugin, paid_order

from kpay.core.errors import Conflict
from kpay.core.money.providers import ProviderCapabilities
from kpay.testing import FakeProvider, FakeProviderPlugin


@pytest.fixture
def cashpay() -> FakeProvider:
    """Takes payments, refunds nothing (a voucher or cash-desk system)."""
    return FakeProvider("cashpay", ("cash",), url_name="cash",
                        capabilities=ProviderCapabilities(refunds=False, partial_refunds=False))


@pytest.fixture
def wholepay() -> FakeProvider:
    """Refunds only whole orders."""
    return FakeProvider("wholepay", ("whole",),
                        capabilities=ProviderCapabilities(partial_refunds=False))


@pytest.fixture
def kpay_extra_plugins(money_plugin: MoneyTestPlugin, cashpay: FakeProvider,
                       wholepay: FakeProvider) -> list[tuple[str, Any]]:
    return [("money_test", money_plugin), ("limited", FakeProviderPlugin(cashpay, wholepay))]


async def untouched(app, order_id: str) -> None:
    stored = await app.money.orders.get(order_id)
    assert stored["refundable"] == 250 and stored["refunded"] == 0
    assert await app.store["refunds"].count_documents({"order_id": order_id}) == 0


@pytest.mark.gen_test
async def test_a_provider_without_refunds_refuses_before_reserving(api, kpay_app, cashpay):
    token = await api.login("amy")
    order = await paid_order(api, token, "g250", "cash")
    for amount in (250, 100):
        with pytest.raises(Conflict) as refused:
            await kpay_app.money.orders.refund(order["id"], amount, "r", to="original")
        assert refused.value.status == 409 and refused.value.code == "refund_not_supported"
        assert refused.value.details["provider"] == "cashpay"
    await untouched(kpay_app, order["id"])
    assert cashpay.refunds == []
    # The wallet still takes the refund.
    refund = await kpay_app.money.orders.refund(order["id"], 250, "to_wallet")
    assert refund["status"] == "succeeded" and refund["to"] == "wallet"


@pytest.mark.gen_test
async def test_a_provider_without_partial_refunds_takes_only_whole_ones(api, kpay_app,
                                                                        wholepay):
    token = await api.login("amy")
    order = await paid_order(api, token, "g250", "whole")
    with pytest.raises(Conflict) as refused:
        await kpay_app.money.orders.refund(order["id"], 100, "part", to="original")
    assert refused.value.code == "partial_refund_not_supported"
    await untouched(kpay_app, order["id"])
    assert wholepay.refunds == []
    refund = await kpay_app.money.orders.refund(order["id"], 250, "whole", to="original")
    assert refund["status"] == "succeeded" and wholepay.refunds == [refund["out_refund_no"]]


@pytest.mark.gen_test
async def test_bad_refund_input_is_still_a_400_first(api, kpay_app):
    token = await api.login("amy")
    order = await paid_order(api, token, "g250", "cash")
    for amount in (0, -5, 1.5, True):
        with pytest.raises(Exception) as refused:
            await kpay_app.money.orders.refund(order["id"], amount, "bad", to="original")
        assert getattr(refused.value, "code", "") == "invalid_amount"
    await untouched(kpay_app, order["id"])
