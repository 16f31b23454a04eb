"""The engine charges the due minutes of many sessions in one MongoDB transaction."""

import asyncio

import pytest
from consult_helpers import ledger_minutes, live_session, state, wallet

from kpay.core.metrics import commands_since, db_commands
from kpay.core.money import accounts
from kpay.testing import assert_books_balanced
from plugins.consult_billing import engine_for, tracker_for
from plugins.consult_billing.sessions import CONSULTATIONS


async def sessions_of(api, count, **options):
    """``count`` running sessions, each with its own student and consultant."""
    return [await live_session(api, student=f"stu{i}", consultant=f"con{i}", **options)
            for i in range(count)]


@pytest.mark.gen_test(timeout=60)
async def test_a_minute_of_many_sessions_costs_under_three_round_trips_each(api, kpay_app):
    running = await sessions_of(api, 12, rate=100, wallet=1_000)
    for _, s_ws, _ in running:
        assert (await s_ws.event("tick"))["data"]["minute"] == 1
    engine = engine_for(kpay_app)
    # The process's background heartbeat would be counted too if it fired during the
    # sweep (it did at times on a busy machine): pause it, the sweep beats by itself.
    tracker_for(kpay_app).beating.cancel()
    kpay_app.clock.advance(60)
    before = db_commands()
    assert await engine.sweep() == 12
    sent = commands_since(before)
    # The sweep's two heartbeats (the engine's, this process's) and its find, then one
    # transaction for all twelve: the wallet read, the summed account updates, the
    # entries, the session updates, the commit.
    assert sent == {"update": 4, "find": 2, "insert": 1, "commitTransaction": 1}, sent
    assert sum(sent.values()) / 12 <= 3
    for pair, s_ws, _ in running:
        tick = (await s_ws.event("tick"))["data"]
        assert (tick["minute"], tick["charged"], tick["balance"]) == (2, 200, 800)
        assert (await state(api, pair))["billed_minutes"] == 2
        assert await wallet(api, pair.student) == 800
        assert len(await ledger_minutes(kpay_app, pair.consultation_id)) == 2
    earned = await kpay_app.money.ledger.balance(accounts.earnings("con0"))
    fee = await kpay_app.money.ledger.balance(accounts.PLATFORM_REVENUE)
    assert earned == 160 and fee == 12 * 2 * 20
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_a_session_whose_wallet_is_short_ends_and_the_rest_are_charged(api, kpay_app):
    running = await sessions_of(api, 3, rate=100, wallet=300)
    # The second student spends all but 50 fen elsewhere.
    await kpay_app.money.ledger.post(
        "test-drain", [(accounts.wallet("stu1"), -150), ("external:elsewhere", 150)])
    await kpay_app.advance_clock(60)
    bodies = [await state(api, pair) for pair, _, _ in running]
    assert [(b["status"], b["billed_minutes"]) for b in bodies] == [
        ("active", 2), ("ended", 1), ("active", 2)]
    assert bodies[1]["end_reason"] == "funds_exhausted"
    assert [await wallet(api, pair.student) for pair, _, _ in running] == [100, 50, 100]
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_one_wallet_paying_two_sessions_in_one_batch(api, kpay_app):
    # One student in two sessions: after both accepts 150 fen are left, one minute's
    # worth. The batch charges the first session's minute 2 and leaves the second out,
    # which then ends for want of funds.
    first = await live_session(api, student="stu", consultant="con1", rate=100, wallet=350)
    second = await live_session(api, student="stu", consultant="con2", rate=100, wallet=0)
    assert await wallet(api, first[0].student) == 150
    await kpay_app.advance_clock(60)
    bodies = sorted([await state(api, first[0]), await state(api, second[0])],
                    key=lambda b: b["billed_minutes"])
    assert [(b["status"], b["billed_minutes"]) for b in bodies] == [("ended", 1),
                                                                    ("active", 2)]
    assert bodies[0]["end_reason"] == "funds_exhausted"
    assert await wallet(api, first[0].student) == 50
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_a_batch_read_before_a_change_is_read_again(api, kpay_app):
    running = await sessions_of(api, 3, rate=100, wallet=1_000)
    engine = engine_for(kpay_app)
    kpay_app.clock.advance(60)
    stale = [doc async for doc in kpay_app.store[CONSULTATIONS].find({}).sort("student_id")]
    ended, _, _ = running[1]
    status, _ = await api.post(ended.path + "/end", token=ended.student.token)
    assert status == 200
    # The first batch meets the ended session and is rolled back whole; the sessions
    # are read again and the two still running are charged in a second batch.
    before = db_commands()
    returned = await engine.charge_together(stale, kpay_app.clock.now())
    sent = commands_since(before)
    assert sent["abortTransaction"] == 1 and sent["commitTransaction"] == 1, sent
    assert [(doc["status"], doc["minute"]) for doc in returned] == [
        ("active", 2), ("ended", 1), ("active", 2)]
    assert [(await state(api, pair))["billed_minutes"] for pair, _, _ in running] == [2, 1, 2]
    assert [len(await ledger_minutes(kpay_app, pair.consultation_id))
            for pair, _, _ in running] == [2, 1, 2]
    # Nothing more is due.
    await engine.sweep()
    assert [(await state(api, pair))["billed_minutes"] for pair, _, _ in running] == [2, 1, 2]
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=90)
async def test_racing_sweeps_and_spends_charge_each_minute_once(api, kpay_app):
    running = await sessions_of(api, 6, rate=100, wallet=500)
    engine = engine_for(kpay_app)
    kpay_app.clock.advance(3 * 60 + 1)
    ledger = kpay_app.money.ledger

    async def spend(i):
        try:
            await ledger.post(f"test-spend:{i}", [(accounts.wallet(f"stu{i}"), -150),
                                                  ("external:elsewhere", 150)])
        except Exception as e:  # the wallet may be spent already
            return e

    await asyncio.gather(engine.sweep(), engine.sweep(), engine.sweep(),
                         *[spend(i) for i in range(6)])
    for i, (pair, _, _) in enumerate(running):
        body = await state(api, pair)
        minutes = await ledger_minutes(kpay_app, pair.consultation_id)
        assert len(minutes) == body["billed_minutes"] <= 4
        spent = await ledger.entries_of(accounts.wallet(f"stu{i}"), limit=50)
        booked = sum(entry["amount"] for entry in spent)
        assert await wallet(api, pair.student) == booked >= 0
    await assert_books_balanced(kpay_app)
