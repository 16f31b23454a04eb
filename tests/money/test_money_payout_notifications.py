"""A payout tells its consultant: saved notifications in Chinese linking to the console,
and ``earnings_changed`` for the console's figures (docs/api.md "Notifications")."""

from __future__ import annotations

import pytest
from payout_helpers import withdraw, withdrawable_consultant

pytestmark = pytest.mark.payouts  # the fake payout provider and settings: conftest.py


@pytest.mark.gen_test
async def test_waiting_and_paid_payouts_are_told(api, kpay_app, clock):
    token, _ = await withdrawable_consultant(kpay_app, api, clock)
    ws = await api.socket(token)
    assert (await ws.request("sub", ch="user:carol"))["ok"]
    status, body = await withdraw(api, token, 1000)
    assert status == 201, body
    await ws.event("earnings_changed")
    assert (await ws.event("notification"))["data"]["title"] == "提现 ¥10.00 待确认收款"
    payout_id = body["payout"]["id"]
    status, body = await api.post(f"/api/v1/dev/payouts/{payout_id}/confirm", token=token)
    assert status == 200, body
    await ws.event("earnings_changed")
    status, page = await api.get("/api/v1/notifications", token)
    assert [(n["title"], n["link"]) for n in page["notifications"]] == [
        ("提现 ¥10.00 已到账", "/static/console.html"),
        ("提现 ¥10.00 待确认收款", "/static/console.html")]
    assert page["unread"] == 2
