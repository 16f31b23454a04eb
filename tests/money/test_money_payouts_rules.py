"""The rules of withdrawals (docs/money.md, "Payouts"): the hold, minimum and daily
maximum, idempotency, the openid, admin approval with the audit log, negative earnings
after a refund, concurrency, reconciliation, and the database round trips of each step."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import pytest
from payout_helpers import (
    DAY,
    balances,
    earn,
    give_openid,
    payout_of,
    withdraw,
    withdrawable_consultant,
)

from kpay.core.auth import User
from kpay.core.metrics import commands_since, db_commands
from kpay.core.money.providers import TransferState

pytestmark = pytest.mark.payouts  # the fake payout provider and settings: conftest.py


@pytest.mark.gen_test
async def test_money_is_held_for_hold_days(api, kpay_app, clock, fake):
    token = await api.login("carol", "consultant")
    await give_openid(kpay_app, "carol")
    earned_at = kpay_app.clock.now()
    first = await earn(kpay_app, "carol", 1000, "test:earn:1")
    await clock.advance(3 * DAY)
    second = await earn(kpay_app, "carol", 2000, "test:earn:2")
    status, summary = await api.get("/api/v1/earnings/summary", token=token)
    assert status == 200
    assert summary["balance"] == first + second and summary["withdrawable"] == 0
    assert summary["pending"] == first + second and summary["hold_days"] == 7
    assert [f["amount"] for f in summary["frees"]] == [first, second]
    # The Beijing days the money frees up: 7 days after each earning (whatever instant
    # the test runs at; make test-times moves it across midnight).
    beijing = timezone(timedelta(hours=8))
    assert [f["date"] for f in summary["frees"]] == [
        (earned_at + timedelta(days=days)).astimezone(beijing).date().isoformat()
        for days in (7, 10)]
    status, body = await withdraw(api, token, 100)
    assert status == 409 and body["error"]["code"] == "not_withdrawable"
    await clock.advance(4 * DAY + 60)
    _, summary = await api.get("/api/v1/earnings/summary", token=token)
    assert summary["withdrawable"] == first and summary["pending"] == second
    status, body = await withdraw(api, token, first + 1)
    assert status == 409 and body["error"]["withdrawable"] == first
    status, body = await withdraw(api, token, first)
    assert status == 201, body


@pytest.mark.gen_test
async def test_minimum_daily_maximum_and_bad_input(api, kpay_app, clock, fake):
    kpay_app.settings = kpay_app.settings.replace("payouts", max_per_day=1500)
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    status, body = await withdraw(api, token, 9)
    assert status == 400 and body["error"]["code"] == "payout_below_minimum"
    for bad in (0, -5, 10.5, "100", True, None):
        status, body = await withdraw(api, token, bad)
        assert status == 400, (bad, body)
    status, body = await api.request("POST", "/api/v1/payouts", {"amount": 100, "to": "x"},
                                     token)
    assert status == 400 and body["error"]["code"] == "invalid_field"
    assert (await withdraw(api, token, 1000))[0] == 201
    status, body = await withdraw(api, token, 501)
    assert status == 409 and body["error"]["code"] == "payout_daily_limit"
    assert body["error"]["left_today"] == 500
    assert (await withdraw(api, token, 500))[0] == 201
    assert await balances(kpay_app, "carol") == (earned - 1500, 1500, 0)
    # A day later both went unconfirmed (expired, returned) and the limit starts again.
    await clock.advance(DAY)
    assert await balances(kpay_app, "carol") == (earned, 0, 0)
    assert (await withdraw(api, token, 1500))[0] == 201


@pytest.mark.gen_test
async def test_an_idempotency_key_makes_one_payout(api, kpay_app, clock, fake):
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    first = await withdraw(api, token, 300, key="w-1")
    again = await withdraw(api, token, 300, key="w-1")
    assert first[0] == again[0] == 201 and first[1]["payout"]["id"] == again[1]["payout"]["id"]
    status, body = await withdraw(api, token, 301, key="w-1")
    assert status == 409 and body["error"]["code"] == "idempotency_conflict"
    assert await balances(kpay_app, "carol") == (earned - 300, 300, 0)


@pytest.mark.gen_test
async def test_an_openid_is_needed_and_only_consultants_withdraw(api, kpay_app, clock, fake):
    token = await api.login("carol", "consultant")
    await earn(kpay_app, "carol", 5000, "test:earn:c")
    await clock.advance(8 * DAY)
    status, body = await withdraw(api, token, 100)
    assert status == 409 and body["error"]["code"] == "openid_required"
    student = await api.login("sam", "student")
    status, body = await withdraw(api, student, 100)
    assert status == 403
    await give_openid(kpay_app, "carol")
    assert (await withdraw(api, token, 100))[0] == 201


@pytest.mark.gen_test
async def test_large_payouts_wait_for_an_admin_and_are_audited(api, kpay_app, clock, fake):
    kpay_app.settings = kpay_app.settings.replace("payouts", approval_above=1000)
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    admin = await api.login("root", "admin")
    _, body = await withdraw(api, token, 1500)
    big = body["payout"]
    assert big["status"] == "awaiting_approval" and big["needs_approval"]
    assert not fake.sends
    await clock.advance(61)  # the job sends only approved payouts
    assert not fake.sends
    status, body = await api.post(f"/api/v1/admin/payouts/{big['id']}/approve",
                                  {"reason": "known coach"}, admin)
    assert status == 200 and body["payout"]["status"] == "waiting_confirmation", body
    status, body = await api.post(f"/api/v1/admin/payouts/{big['id']}/approve", {}, admin)
    assert status == 409 and body["error"]["code"] == "payout_not_awaiting_approval"
    status, _ = await api.post(f"/api/v1/admin/payouts/{big['id']}/approve", {}, token)
    assert status == 403

    _, body = await withdraw(api, token, 2000)
    status, body = await api.post(f"/api/v1/admin/payouts/{body['payout']['id']}/reject",
                                  {"reason": "looks odd"}, admin)
    assert status == 200 and body["payout"]["status"] == "cancelled"
    assert body["payout"]["reason"] == "rejected: looks odd"
    records = await kpay_app.audit.list(actor="root")
    assert [(r["action"], r["reason"]) for r in records] == [
        ("payout.reject", "looks odd"), ("payout.approve", "known coach")]
    assert await balances(kpay_app, "carol") == (earned - 1500, 1500, 0)


@pytest.mark.gen_test
async def test_negative_earnings_block_withdrawals_and_net_out(api, kpay_app, clock, fake):
    from kpay.core.money.reconcile import reconcile

    # The money test kind pays what it sells to "seller1".
    seller = "seller1"
    seller_token = await api.login(seller, "consultant")
    await give_openid(kpay_app, seller)
    status, body = await api.post("/api/v1/orders", {"item": {"kind": "test_gadget",
                                                              "sku": "g999"},
                                                     "channel": "native"},
                                  await api.login("sam", "student"))
    assert status == 201, body
    order = body["order"]
    await kpay_app.money.orders.mark_paid(order["id"], 999, source="external:fakepay")
    await clock.advance(8 * DAY)
    _, summary = await api.get("/api/v1/earnings/summary", token=seller_token)
    earned = summary["withdrawable"]
    status, body = await withdraw(api, seller_token, earned)
    assert status == 201, body
    payout_id = (await api.get("/api/v1/payouts", token=seller_token))[1]["payouts"][0]["id"]
    await api.post(f"/api/v1/dev/payouts/{payout_id}/confirm", token=seller_token)
    await kpay_app.money.orders.refund(order["id"], 999, "after the payout", to="original")
    _, summary = await api.get("/api/v1/earnings/summary", token=seller_token)
    assert summary["balance"] == -earned and summary["withdrawable"] == 0
    report = await reconcile(kpay_app.store.db, kpay_app.clock.now())
    assert report.clean and report.warnings == [
        f"earnings:{seller} is negative: {-earned} fen (made up from later earnings)"]
    status, body = await withdraw(api, seller_token, 10)
    assert status == 409 and body["error"]["code"] == "negative_earnings"
    # Later earnings make up for it first.
    part = await earn(kpay_app, seller, 2000, "test:earn:later")
    await clock.advance(8 * DAY)
    _, summary = await api.get("/api/v1/earnings/summary", token=seller_token)
    assert summary["balance"] == part - earned == summary["withdrawable"]
    assert (await withdraw(api, seller_token, part - earned))[0] == 201


@pytest.mark.gen_test(timeout=60)
async def test_twenty_concurrent_withdrawals_never_exceed_the_balance(api, kpay_app, clock,
                                                                     fake):
    import asyncio

    token, earned = await withdrawable_consultant(kpay_app, api, clock, earned=1250)
    assert earned == 1000
    answers = await asyncio.gather(*[withdraw(api, token, 100) for _ in range(20)])
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] * 10 + [409] * 10, answers
    assert {b["error"]["code"] for s, b in answers if s == 409} == {"not_withdrawable"}
    assert await balances(kpay_app, "carol") == (0, 1000, 0)


@pytest.mark.gen_test
async def test_database_round_trips_of_each_payout_step(api, kpay_app, clock, fake):
    """Counted for the issue's note (printed with -s); bounded so a change shows."""
    await withdrawable_consultant(kpay_app, api, clock)
    payouts = kpay_app.money.payouts
    user = User("carol", "consultant")
    steps: dict[str, int] = {}

    async def count(name: str, step: Any) -> Any:
        before = db_commands()
        result = await step
        steps[name] = int(sum(commands_since(before).values()))
        return result

    first = await count("request: reserve + send -> waiting_confirmation",
                        payouts.request(user, 500))
    await count("confirmed -> succeeded (payout:<id>:paid)", payouts.apply(
        first["_id"], TransferState("succeeded", first["out_bill_no"], 500)))
    fake.transfer_mode = "lose"
    lost = await count("request: reserve + send, answer lost", payouts.request(user, 500))
    fake.transfer_mode = "wait"
    now = kpay_app.clock.now()
    await count("job: query in doubt -> waiting_confirmation",
                payouts._sweep_one(await payout_of(kpay_app, lost["_id"]), now))
    waiting = await payout_of(kpay_app, lost["_id"])
    await count("job: expiry (query, cancel) -> expired (payout:<id>:return)",
                payouts._sweep_one(waiting, waiting["expires_at"]))
    fake.transfer_mode = "fail"
    await count("request: reserve + refused -> failed (payout:<id>:return)",
                payouts.request(user, 500))
    print()
    for name, commands in steps.items():
        print(f"{commands:3}  {name}")
    # 20: each booked step also saves the consultant's notification (insert, trim).
    assert max(steps.values()) <= 20, steps


@pytest.mark.books_may_break
@pytest.mark.gen_test
async def test_reconcile_finds_a_payout_whose_books_disagree(api, kpay_app, clock, fake):
    from kpay.core.money.reconcile import reconcile

    token, _ = await withdrawable_consultant(kpay_app, api, clock)
    _, body = await withdraw(api, token, 300)
    payout_id = body["payout"]["id"]
    # Planted: marked paid without its posting.
    await kpay_app.money.payouts.collection.update_one({"_id": payout_id},
                                                       {"$set": {"status": "succeeded"}})
    report = await reconcile(kpay_app.store.db, kpay_app.clock.now())
    assert report.breaks == [
        f"payout {payout_id}: succeeded but payout:{payout_id}:paid is missing from the ledger",
        "payouts:in_flight holds 300 but the open payouts total 0"]
