"""Withdrawals (docs/money.md, "Payouts"): a consultant's earnings paid out through a
provider with ``payouts`` (the fake one), end to end: confirmation, the notify, expiry,
failure, a lost answer (query before retry), cancellation. The books balance after
every test (tests/money/conftest.py); the rules are in test_money_payouts_rules.py."""

from __future__ import annotations

import pytest
from payout_helpers import (
    balances,
    payout_of,
    withdraw,
    withdrawable_consultant,
)

from kpay.core.errors import Conflict

pytestmark = pytest.mark.payouts  # the fake payout provider and settings: conftest.py


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
