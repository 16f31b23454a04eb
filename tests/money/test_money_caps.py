"""The cap on unpaid orders per user ([money] max_pending_orders_per_user)."""

from __future__ import annotations

from typing import Any

import pytest

ORDERS = "/api/v1/orders"


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": []},
            "money": {"topup_max": 100_000, "max_pending_orders_per_user": 2}}


def gadget(sku: str = "g100") -> dict[str, Any]:
    return {"item": {"kind": "test_gadget", "sku": sku}, "channel": "native"}


@pytest.mark.gen_test
async def test_the_order_over_the_cap_is_refused_until_one_is_paid_or_expires(api, kpay_app,
                                                                            clock):
    token = await api.login("amy")
    await api.topup(token, 1000)  # a top-up order too, paid at once
    first = []
    for _ in range(2):
        status, body = await api.post(ORDERS, gadget(), token)
        assert status == 201 and body["order"]["status"] == "pending", body
        first.append(body["order"]["id"])
    status, body = await api.post(ORDERS, gadget("g250"), token)
    assert status == 409, body
    assert body["error"]["code"] == "too_many_open"
    assert (body["error"]["what"], body["error"]["limit"]) == ("pending_orders", 2)
    assert await kpay_app.store["orders"].count_documents(
        {"user_id": "amy", "kind": "test_gadget"}) == 2
    # Another user has their own cap.
    status, body = await api.post(ORDERS, gadget(), await api.login("ben"))
    assert status == 201, body
    # Wallet orders are paid at once and never pending: not capped.
    status, body = await api.post(ORDERS, {**gadget(), "channel": "wallet"}, token)
    assert status == 201 and body["order"]["status"] == "fulfilled", body

    # Paying one frees a place.
    status, body = await api.post(f"/api/v1/dev/orders/{first[0]}/pay", token=token)
    assert status == 200 and body["order"]["status"] == "fulfilled", body
    status, body = await api.post(ORDERS, gadget(), token)
    assert status == 201, body
    status, body = await api.post(ORDERS, gadget(), token)
    assert status == 409 and body["error"]["code"] == "too_many_open"

    # Orders past their expiry no longer count, closed by the job or not yet.
    await clock.advance(kpay_app.settings.money.order_expiry_seconds + 1)
    for _ in range(2):
        status, body = await api.post(ORDERS, gadget(), token)
        assert status == 201, body


@pytest.mark.gen_test
async def test_a_retried_request_with_its_key_is_not_refused_by_the_cap(api):
    token = await api.login("amy")
    for n in range(2):
        status, body = await api.request("POST", ORDERS, gadget(), token,
                                         headers={"Idempotency-Key": f"k{n}"})
        assert status == 201, body
    status, body = await api.request("POST", ORDERS, gadget(), token,
                                     headers={"Idempotency-Key": "k0"})
    assert status == 201 and body["order"]["status"] == "pending", body
    status, body = await api.request("POST", ORDERS, gadget(), token,
                                     headers={"Idempotency-Key": "k2"})
    assert status == 409 and body["error"]["code"] == "too_many_open", body
