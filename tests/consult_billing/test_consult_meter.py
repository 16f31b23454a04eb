"""The meter over whole sessions: each minute charged once, totals that reconcile."""

import asyncio

import pytest
from consult_helpers import (
    ledger_minutes,
    live_session,
    state,
    wait_for_state,
    wallet,
)

from kpay.core.money import accounts
from kpay.testing import assert_books_balanced
from plugins.consult_billing import engine_for


async def balance(app, account):
    return await app.money.ledger.balance(account)


@pytest.mark.gen_test
async def test_funds_exhausted_session(api, kpay_app):
    # 5 minutes of money at 100 fen: minutes 1..5 are paid, minute 6 cannot be.
    pair, s_ws, c_ws = await live_session(api, rate=100, wallet=500)
    first = await s_ws.event("tick")
    assert first["data"] == {"minute": 1, "charged": 100, "amount": 100, "balance": 400,
                             "minutes_left": 4, "paid_until": first["data"]["paid_until"]}
    for minute in range(2, 6):
        await kpay_app.advance_clock(60)
        tick = await s_ws.event("tick")
        assert tick["data"]["minute"] == minute
        assert tick["data"]["balance"] == 500 - 100 * minute
    low = await s_ws.event("low_balance")
    assert low["data"]["minutes_left"] <= 3
    await kpay_app.advance_clock(60)
    ended = await c_ws.event("ended")
    assert ended["data"]["reason"] == "funds_exhausted"
    assert ended["data"]["summary"]["billed_minutes"] == 5
    body = await state(api, pair)
    assert body["status"] == "ended" and body["end_reason"] == "funds_exhausted"
    assert (body["billed_minutes"], body["charged"]) == (5, 500)
    assert body["consultant_earned"] + body["platform_fee"] == body["charged"]
    assert body["consultant_earned"] == await balance(kpay_app, accounts.earnings("con"))
    assert body["platform_fee"] == await balance(kpay_app, accounts.PLATFORM_REVENUE)
    assert await wallet(api, pair.student) == 0
    await kpay_app.advance_clock(600)
    assert len(await ledger_minutes(kpay_app, pair.consultation_id)) == 5
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_max_minutes_session(api, kpay_app):
    pair, s_ws, _ = await live_session(api, rate=100, wallet=10_000, max_minutes=3)
    await kpay_app.advance_clock(60)
    await kpay_app.advance_clock(60)
    assert (await state(api, pair))["billed_minutes"] == 3
    await kpay_app.advance_clock(60)
    ended = await s_ws.event("ended")
    assert ended["data"]["reason"] == "max_minutes"
    body = await state(api, pair)
    assert (body["billed_minutes"], body["charged"]) == (3, 300)
    assert await wallet(api, pair.student) == 9_700
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
@pytest.mark.parametrize("party", ["student", "consultant"])
async def test_ended_by_each_party(api, kpay_app, party):
    pair, s_ws, _ = await live_session(api, rate=250, wallet=10_000)
    await kpay_app.advance_clock(60)
    token = getattr(pair, party).token
    status, body = await api.post(pair.path + "/end", token=token)
    assert status == 200, body
    assert body["consultation"]["end_reason"] == f"ended_by_{party}"
    ended = await s_ws.event("ended")
    assert ended["data"]["reason"] == f"ended_by_{party}"
    # Time goes on; nothing more is charged.
    await kpay_app.advance_clock(300)
    body = await state(api, pair)
    assert (body["status"], body["billed_minutes"], body["charged"]) == ("ended", 2, 500)
    assert await wallet(api, pair.student) == 9_500
    # Ending twice is a conflict and changes nothing.
    status, again = await api.post(pair.path + "/end", token=pair.student.token)
    assert status == 409 and again["error"]["code"] == "already_ended"
    assert (await state(api, pair))["charged"] == 500
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_clock_jump_bills_each_minute_once(api, kpay_app):
    pair, s_ws, _ = await live_session(api, rate=100, wallet=10_000)
    await kpay_app.advance_clock(7 * 60 + 5)
    body = await state(api, pair)
    assert body["billed_minutes"] == 8
    ticks = [await s_ws.event("tick") for _ in range(8)]
    assert [t["data"]["minute"] for t in ticks] == list(range(1, 9))
    keys = await ledger_minutes(kpay_app, pair.consultation_id)
    assert keys == [f"consult:{pair.consultation_id}:{m}" for m in range(1, 9)]
    # Running the engine again at the same time changes nothing.
    await kpay_app.advance_clock(1)
    assert (await state(api, pair))["billed_minutes"] == 8
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_two_engine_runs_at_once_charge_once(api, kpay_app):
    pair, _, _ = await live_session(api, rate=100, wallet=10_000)
    engine = engine_for(kpay_app)
    kpay_app.clock.advance(3 * 60 + 1)
    await asyncio.gather(engine.sweep(), engine.sweep(), engine.sweep())
    body = await state(api, pair)
    assert (body["billed_minutes"], body["charged"]) == (4, 400)
    assert len(await ledger_minutes(kpay_app, pair.consultation_id)) == 4
    assert await wallet(api, pair.student) == 9_600
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_wallet_drained_by_another_payment(api, kpay_app):
    pair, s_ws, _ = await live_session(api, rate=100, wallet=1_000)
    await kpay_app.advance_clock(60)
    # Another purchase takes all but 50 fen while the session runs.
    await kpay_app.money.ledger.post(
        "test-drain", [(accounts.wallet("stu"), -750), ("external:elsewhere", 750)], "drain")
    await kpay_app.advance_clock(60)
    ended = await s_ws.event("ended")
    assert ended["data"]["reason"] == "funds_exhausted"
    body = await state(api, pair)
    assert (body["billed_minutes"], body["charged"]) == (2, 200)
    assert await wallet(api, pair.student) == 50
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_fee_split_never_loses_a_fen(api, kpay_app):
    # 333 fen at the default 20% fee: 66 fee (rounded down), 267 earned, every minute.
    pair, _, _ = await live_session(api, rate=333, wallet=10_000)
    await kpay_app.advance_clock(2 * 60)
    status, body = await api.post(pair.path + "/end", token=pair.consultant.token)
    assert status == 200
    body = await state(api, pair)
    assert (body["charged"], body["consultant_earned"], body["platform_fee"]) == (999, 801, 198)
    assert await balance(kpay_app, accounts.earnings("con")) == 801
    assert await balance(kpay_app, accounts.PLATFORM_REVENUE) == 198
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_receipt_and_history(api, kpay_app):
    pair, _, _ = await live_session(api, rate=120, wallet=10_000)
    await kpay_app.advance_clock(2 * 60)
    await api.post(pair.path + "/end", token=pair.student.token)
    status, body = await api.get(pair.path + "/receipt", pair.consultant.token)
    assert status == 200, body
    receipt = body["receipt"]
    assert [m["minute"] for m in receipt["minutes"]] == [1, 2, 3]
    assert receipt["booked"] == receipt["charged"] == 360
    assert receipt["consultant_earned"] + receipt["platform_fee"] == 360
    for token, role in ((pair.student.token, "student"), (pair.consultant.token, "consultant")):
        status, listed = await api.get(f"/api/v1/consultations?role={role}", token)
        assert status == 200
        [only] = listed["consultations"]
        assert (only["id"], only["billed_minutes"], only["charged"]) == (
            pair.consultation_id, 3, 360)
    status, other = await api.get("/api/v1/consultations?role=consultant", pair.student.token)
    assert status == 200 and other["consultations"] == []
    stranger = await api.login("eve", "student")
    status, hidden = await api.get(pair.path + "/receipt", stranger)
    assert status == 404 and hidden["error"]["code"] == "consultation_not_found"
    status, bad = await api.get("/api/v1/consultations?role=boss", pair.student.token)
    assert status == 400 and bad["error"]["field"] == "role"


@pytest.mark.gen_test
async def test_rate_change_during_session_keeps_starting_rate(api, kpay_app):
    pair, _, _ = await live_session(api, rate=100, wallet=10_000)
    status, _ = await api.put("/api/v1/consultants/me", {"rate_per_minute": 900},
                              pair.consultant.token)
    assert status == 200
    await kpay_app.advance_clock(2 * 60)
    body = await wait_for_state(api, pair, lambda b: b["billed_minutes"] == 3)
    assert (body["rate_per_minute"], body["charged"]) == (100, 300)
    await assert_books_balanced(kpay_app)
