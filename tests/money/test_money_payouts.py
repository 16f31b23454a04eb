"""Withdrawals (docs/money.md, "Payouts"): a consultant's earnings paid out through a
provider with ``payouts`` (the fake one), end to end, with the books balanced after
every test (tests/money/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from payout_helpers import (
    DAY,
    balances,
    earn,
    give_openid,
    payout_plugin,
    withdraw,
    withdrawable_consultant,
)

from kpay.core.auth import User
from kpay.core.errors import Conflict
from kpay.core.metrics import commands_since, db_commands
from kpay.core.money.providers import TransferState


@pytest.fixture
def money_plugin():
    return payout_plugin()


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": []}, "money": {"topup_max": 100_000},
            "limits": {"enabled": False}, "auth": {"token_ttl_seconds": 90 * 24 * 3600}}


@pytest.fixture
def fake(money_plugin):
    return money_plugin.provider


async def payout_of(kpay_app, payout_id: str) -> dict[str, Any]:
    return await kpay_app.money.payouts.collection.find_one({"_id": payout_id})


@pytest.mark.gen_test
async def test_a_payout_runs_through_confirmation(api, kpay_app, clock, fake):
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    status, body = await withdraw(api, token, 1000)
    assert status == 201, body
    payout = body["payout"]
    assert payout["status"] == "waiting_confirmation"
    stored = await payout_of(kpay_app, payout["id"])
    assert payout["package_info"] == f"pkg-{stored['out_bill_no']}"
    assert await balances(kpay_app, "carol") == (earned - 1000, 1000, 0)

    status, body = await api.post(f"/api/v1/dev/payouts/{payout['id']}/confirm", token=token)
    assert status == 200 and body["payout"]["status"] == "succeeded", body
    assert await balances(kpay_app, "carol") == (earned - 1000, 0, 1000)
    # Confirming again books nothing more.
    status, body = await api.post(f"/api/v1/dev/payouts/{payout['id']}/confirm", token=token)
    assert status == 200 and body["payout"]["status"] == "succeeded"
    assert await balances(kpay_app, "carol") == (earned - 1000, 0, 1000)
    status, history = await api.get("/api/v1/payouts", token=token)
    assert [p["status"] for p in history["payouts"]] == ["succeeded"]
    keys = [e["_id"] async for e in kpay_app.store["ledger"].find(
        {"_id": {"$regex": "^payout:"}}, {"_id": 1})]
    assert sorted(keys) == [f"payout:{payout['id']}:paid", f"payout:{payout['id']}:reserve"]


@pytest.mark.gen_test
async def test_the_transfer_notify_books_once(api, kpay_app, clock, fake):
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    _, body = await withdraw(api, token, 500)
    payout = await payout_of(kpay_app, body["payout"]["id"])
    fake.confirm_transfer(payout["out_bill_no"])
    notify, headers = fake.transfer_notify(payout["out_bill_no"])
    path = "/api/v1/pay/fakepay/transfer-notify"
    first = await api.request("POST", path, raw=notify, headers=headers)
    again = await api.request("POST", path, raw=notify, headers=headers)
    assert first == (200, {"code": "SUCCESS"}) and again == (200, {"code": "SUCCESS"})
    assert [v.outcome for v in fake.verdicts] == ["accepted", "duplicate"]
    assert await balances(kpay_app, "carol") == (earned - 500, 0, 500)
    # A forged notify (another amount, a bad signature) books nothing.
    forged, headers = fake.transfer_notify(payout["out_bill_no"], amount=1)
    status, _ = await api.request("POST", path, raw=forged, headers=headers)
    assert status == 400
    status, _ = await api.request("POST", path, raw=notify,
                                  headers={"X-Fake-Signature": "0" * 64})
    assert status == 400 and fake.verdicts[-1].reason == "bad_signature"


@pytest.mark.gen_test
async def test_an_unconfirmed_payout_expires_and_returns(api, kpay_app, clock, fake):
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    _, body = await withdraw(api, token, 700)
    payout_id = body["payout"]["id"]
    await clock.advance(23 * 3600)
    assert (await payout_of(kpay_app, payout_id))["status"] == "waiting_confirmation"
    await clock.advance(3600 + 60)
    payout = await payout_of(kpay_app, payout_id)
    assert payout["status"] == "expired"
    assert fake.transfers[payout["out_bill_no"]]["status"] == "cancelled"
    assert await balances(kpay_app, "carol") == (earned, 0, 0)


@pytest.mark.gen_test
async def test_a_payout_confirmed_just_before_expiry_is_paid_not_expired(api, kpay_app,
                                                                         clock, fake):
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    _, body = await withdraw(api, token, 700)
    payout = await payout_of(kpay_app, body["payout"]["id"])
    fake.confirm_transfer(payout["out_bill_no"])  # the notify never came
    await clock.advance(24 * 3600 + 60)
    assert (await payout_of(kpay_app, payout["_id"]))["status"] == "succeeded"
    assert await balances(kpay_app, "carol") == (earned - 700, 0, 700)


@pytest.mark.gen_test
async def test_a_refused_transfer_fails_and_returns(api, kpay_app, clock, fake):
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    fake.transfer_mode = "fail"
    status, body = await withdraw(api, token, 300)
    assert status == 201 and body["payout"]["status"] == "failed", body
    assert "NOT_ENOUGH" in body["payout"]["reason"]
    assert await balances(kpay_app, "carol") == (earned, 0, 0)
    # The daily maximum does not count it.
    status, summary = await api.get("/api/v1/earnings/summary", token=token)
    assert summary["withdrawn_today"] == 0 and summary["withdrawable"] == earned


@pytest.mark.gen_test
async def test_a_lost_answer_is_queried_before_any_resend(api, kpay_app, clock, fake):
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    fake.transfer_mode = "lose"
    _, body = await withdraw(api, token, 400)
    payout = await payout_of(kpay_app, body["payout"]["id"])
    assert payout["status"] == "sending" and payout["in_doubt"]
    assert await balances(kpay_app, "carol") == (earned - 400, 400, 0)
    fake.transfer_mode = "wait"
    await clock.advance(61)
    payout = await payout_of(kpay_app, payout["_id"])
    assert payout["status"] == "waiting_confirmation"
    assert fake.sends[payout["out_bill_no"]] == 1  # asked, not sent again
    fake.confirm_transfer(payout["out_bill_no"])
    await clock.advance(24 * 3600)
    assert (await payout_of(kpay_app, payout["_id"]))["status"] == "succeeded"
    assert fake.sends[payout["out_bill_no"]] == 1


@pytest.mark.gen_test
async def test_a_transfer_that_never_arrived_is_sent_again_once(api, kpay_app, clock, fake):
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    fake.transfer_mode = "lose"
    _, body = await withdraw(api, token, 400)
    payout = await payout_of(kpay_app, body["payout"]["id"])
    del fake.transfers[payout["out_bill_no"]]  # the request died on the way out
    fake.transfer_mode = "succeed"
    await clock.advance(61)
    assert (await payout_of(kpay_app, payout["_id"]))["status"] == "succeeded"
    assert fake.sends[payout["out_bill_no"]] == 2
    await clock.advance(61)
    assert fake.sends[payout["out_bill_no"]] == 2
    assert await balances(kpay_app, "carol") == (earned - 400, 0, 400)


@pytest.mark.gen_test
async def test_cancellation_before_confirmation_returns_the_money(api, kpay_app, clock, fake):
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    _, body = await withdraw(api, token, 600)
    payout_id = body["payout"]["id"]
    status, body = await api.post(f"/api/v1/payouts/{payout_id}/cancel", token=token)
    assert status == 200 and body["payout"]["status"] == "cancelled", body
    assert await balances(kpay_app, "carol") == (earned, 0, 0)
    status, body = await api.post(f"/api/v1/payouts/{payout_id}/cancel", token=token)
    assert status == 409 and body["error"]["code"] == "payout_not_cancellable"
    # Confirmed meanwhile: the provider refuses to cancel and nothing is returned.
    _, body = await withdraw(api, token, 600)
    payout = await payout_of(kpay_app, body["payout"]["id"])
    fake.confirm_transfer(payout["out_bill_no"])
    status, body = await api.post(f"/api/v1/payouts/{payout['_id']}/cancel", token=token)
    assert status == 502, body
    await clock.advance(24 * 3600 + 60)
    assert (await payout_of(kpay_app, payout["_id"]))["status"] == "succeeded"
    assert await balances(kpay_app, "carol") == (earned - 600, 0, 600)


@pytest.mark.gen_test
async def test_a_cancel_racing_the_send_returns_nothing_unasked(api, kpay_app, clock, fake):
    kpay_app.settings = kpay_app.settings.replace("payouts", approval_above=100)
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    _, body = await withdraw(api, token, 500)
    seen = await payout_of(kpay_app, body["payout"]["id"])  # the page saw it unsent
    admin = await api.login("root", "admin")
    status, _ = await api.post(f"/api/v1/admin/payouts/{seen['_id']}/approve", {}, admin)
    assert status == 200  # sent meanwhile: waiting for confirmation
    with pytest.raises(Conflict) as refused:
        await kpay_app.money.payouts.cancel(seen, "stale page")
    assert refused.value.code == "payout_not_cancellable"
    assert fake.transfers[seen["out_bill_no"]]["status"] == "waiting_confirmation"
    assert await balances(kpay_app, "carol") == (earned - 500, 500, 0)


@pytest.mark.gen_test
async def test_money_is_held_for_hold_days(api, kpay_app, clock, fake):
    token = await api.login("carol", "consultant")
    await give_openid(kpay_app, "carol")
    first = await earn(kpay_app, "carol", 1000, "test:earn:1")
    await clock.advance(3 * DAY)
    second = await earn(kpay_app, "carol", 2000, "test:earn:2")
    status, summary = await api.get("/api/v1/earnings/summary", token=token)
    assert status == 200
    assert summary["balance"] == first + second and summary["withdrawable"] == 0
    assert summary["pending"] == first + second and summary["hold_days"] == 7
    assert [f["amount"] for f in summary["frees"]] == [first, second]
    assert [f["date"] for f in summary["frees"]] == ["2026-03-09", "2026-03-12"]
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
    assert max(steps.values()) <= 18, steps


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


@pytest.mark.gen_test
async def test_a_payout_left_requested_is_sent_by_the_retry_or_the_job(api, kpay_app, clock,
                                                                      fake, monkeypatch):
    token, earned = await withdrawable_consultant(kpay_app, api, clock)
    payouts = kpay_app.money.payouts
    real_send = payouts.send

    async def dies(payout):
        raise RuntimeError("the process died after the reservation")

    monkeypatch.setattr(payouts, "send", dies)
    for key in ("retry-me", "job-sends-me"):
        status, _ = await withdraw(api, token, 200, key=key)
        assert status == 500
    monkeypatch.setattr(payouts, "send", real_send)
    assert await balances(kpay_app, "carol") == (earned - 400, 400, 0)
    assert not fake.sends
    status, body = await withdraw(api, token, 200, key="retry-me")
    assert status == 201 and body["payout"]["status"] == "waiting_confirmation"
    await clock.advance(61)
    _, history = await api.get("/api/v1/payouts", token=token)
    assert [p["status"] for p in history["payouts"]] == ["waiting_confirmation"] * 2
    assert sorted(fake.sends.values()) == [1, 1]
