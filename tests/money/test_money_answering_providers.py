"""Answering-only providers (docs/money.md): an order keeps the provider that started
its payment. The old provider, registered with ``creates_orders = False`` on the same
channel as the new one, still books its orders' notifies, answers settle_pending's
query and close, and pays their refunds; the new one creates new orders; neither
handles the other's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kpay.core.money.providers import PaymentState
from kpay.testing import FakeProvider, FakeProviderPlugin, assert_books_balanced

CHANNEL = "altpay_qr"


@pytest.fixture
def oldpay() -> FakeProvider:
    provider = FakeProvider("oldpay", (CHANNEL,), secret="old-secret")
    provider.creates_orders = False
    return provider


@pytest.fixture
def newpay() -> FakeProvider:
    return FakeProvider("newpay", (CHANNEL,), secret="new-secret")


@pytest.fixture
def kpay_extra_plugins(oldpay, newpay) -> list[tuple[str, Any]]:
    return [("pays", FakeProviderPlugin(newpay, oldpay))]


async def topup(api, token: str, amount: int) -> dict[str, Any]:
    status, body = await api.post("/api/v1/orders", {
        "item": {"kind": "wallet_topup", "amount": amount}, "channel": CHANNEL}, token)
    assert status == 201, body
    return body["order"]


async def notify(api, url_name: str, signed: tuple[bytes, dict[str, str]]) -> int:
    body, headers = signed
    response = await api.http.fetch(f"{api.base}/api/v1/pay/{url_name}/notify",
                                    method="POST", body=body, headers=headers,
                                    raise_error=False)
    json.loads(response.body)
    return response.code


@pytest.mark.gen_test(timeout=30)
async def test_each_order_is_answered_by_the_provider_that_started_it(
        api, kpay_app, oldpay, newpay):
    orders = kpay_app.money.orders
    assert orders.providers[CHANNEL] is newpay
    assert {p.identifier for p in kpay_app.money.notify_providers()} >= {"oldpay", "newpay"}
    token = await api.login("amy")
    # An order from before the switch: started by oldpay (as the order remembers).
    old = await topup(api, token, 300)
    await orders.collection.update_one({"_id": old["id"]}, {"$set": {"provider": "oldpay"}})
    new = await topup(api, token, 500)
    assert (await orders.get(new["id"]))["provider"] == "newpay"
    # Neither provider books the other's order ...
    assert await notify(api, "newpay", newpay.payment_notify(old)) == 400
    assert await notify(api, "oldpay", oldpay.payment_notify(new)) == 400
    # ... each books its own.
    assert await notify(api, "oldpay", oldpay.payment_notify(old)) == 200
    assert (await orders.get(old["id"]))["paid_from"] == "external:oldpay"
    # settle_pending asks newpay about the new order, not oldpay.
    newpay.states[new["id"]] = PaymentState("paid", 500, "t-new")
    kpay_app.clock.advance(10 * 60)
    assert await kpay_app.money.settle_pending() == 1
    assert newpay.queried == [new["id"]] and oldpay.queried == []
    assert (await orders.get(new["id"]))["paid_from"] == "external:newpay"
    # The old order's refund goes through oldpay.
    refund = await orders.refund(old["id"], 300, "x", to="original")
    assert refund["status"] == "succeeded"
    assert len(oldpay.refunds) == 1 and not newpay.refunds
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_two_creating_providers_on_a_channel_or_one_identifier_twice_are_refused(
        kpay_app):
    orders = kpay_app.money.orders
    with pytest.raises(ValueError, match="claimed twice"):
        orders.register([], [FakeProvider("thirdpay", (CHANNEL,))])
    with pytest.raises(ValueError, match="registered twice"):
        orders.register([], [FakeProvider("newpay", ("elsewhere",))])
