"""Presence rules: a drop within the grace period is billed, a longer one pauses the meter
from the moment of the drop, both back resumes it, a long absence ends the session."""

import pytest
from consult_helpers import join, live_session, state, wait_for_state

from kpay.testing import assert_books_balanced
from plugins.consult_billing import engine_for


def absent(party):
    """The party is recorded gone and the absence has started (two writes, in order)."""
    return lambda b: b["present"][party] is False and b["absent_since"] is not None


@pytest.mark.gen_test
async def test_drop_pause_and_resume(api, kpay_app):
    pair, s_ws, c_ws = await live_session(api, rate=100, wallet=10_000)
    await kpay_app.advance_clock(20)  # 20 s into minute 1
    s_ws.close()
    await wait_for_state(api, pair, absent("student"))
    await kpay_app.advance_clock(31)  # grace over: paused as of the drop
    body = await state(api, pair)
    assert body["status"] == "paused" and body["billed_minutes"] == 1
    paused = await c_ws.event("paused")
    assert 39 <= paused["data"]["remaining_seconds"] <= 41  # 40 s of minute 1 unused
    await kpay_app.advance_clock(120)  # nothing is charged while paused
    assert (await state(api, pair))["billed_minutes"] == 1
    s_ws = await join(api, pair.student, pair)
    body = await wait_for_state(api, pair, lambda b: b["status"] == "active")
    await c_ws.event("resumed")
    # The 40 s already paid are used first: no charge 35 s after the resume...
    await kpay_app.advance_clock(35)
    assert (await state(api, pair))["billed_minutes"] == 1
    # ...and minute 2 once they are used up.
    await kpay_app.advance_clock(10)
    assert (await state(api, pair))["billed_minutes"] == 2
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_short_drop_is_billed_as_present(api, kpay_app):
    pair, _, c_ws = await live_session(api, rate=100, wallet=10_000)
    await kpay_app.advance_clock(50)
    c_ws.close()
    await wait_for_state(api, pair, absent("consultant"))
    await kpay_app.advance_clock(15)  # minute 2 is due, but the consultant is away
    assert (await state(api, pair))["billed_minutes"] == 1
    c_ws = await join(api, pair.consultant, pair)
    # Back within the grace: the due minute is charged, the session never paused.
    body = await wait_for_state(api, pair, lambda b: b["billed_minutes"] == 2)
    assert body["status"] == "active" and body["paused_at"] is None
    # Minute 2 ran from its due time (60 s), not from the return (~65 s): due at 120 s.
    await kpay_app.advance_clock(56)
    assert (await state(api, pair))["billed_minutes"] == 3
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_long_absence_ends_session(api, kpay_app):
    pair, s_ws, c_ws = await live_session(api, rate=100, wallet=10_000)
    c_ws.close()
    await wait_for_state(api, pair, absent("consultant"))
    await kpay_app.advance_clock(40)
    assert (await state(api, pair))["status"] == "paused"
    await kpay_app.advance_clock(300)
    ended = await s_ws.event("ended")
    assert ended["data"]["reason"] == "absent"
    body = await state(api, pair)
    assert (body["status"], body["billed_minutes"]) == ("ended", 1)
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_jump_over_drop_pauses_then_ends(api, kpay_app):
    # One clock jump past both deadlines: pause, then end, in order, no charge after.
    pair, s_ws, _ = await live_session(api, rate=100, wallet=10_000)
    await kpay_app.advance_clock(10)
    s_ws.close()
    await wait_for_state(api, pair, absent("student"))
    await kpay_app.advance_clock(3600)
    body = await state(api, pair)
    assert (body["status"], body["end_reason"], body["billed_minutes"]) == ("ended", "absent", 1)
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_accept_before_joining_gets_the_grace(api, kpay_app):
    from consult_helpers import make_pair, request

    pair = await make_pair(api, rate=100, wallet=10_000)
    await request(api, pair)
    status, body = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 200 and body["consultation"]["absent_since"] is not None
    await join(api, pair.student, pair)
    await join(api, pair.consultant, pair)
    await wait_for_state(api, pair, lambda b: b["absent_since"] is None)
    await kpay_app.advance_clock(61)
    assert (await state(api, pair))["billed_minutes"] == 2
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_signalling_relay(api, kpay_app):
    pair, s_ws, c_ws = await live_session(api, rate=100, wallet=10_000)
    ch = f"consult:{pair.consultation_id}"
    reply = await s_ws.request("pub", ch=ch, type="offer", data={"sdp": "v=0 offer"})
    assert reply["ok"] is True, reply
    offer = await c_ws.event("offer")
    assert offer["data"] == {"sdp": "v=0 offer", "from": "stu"}
    reply = await c_ws.request("pub", ch=ch, type="answer", data={"sdp": "v=0 answer"})
    assert reply["ok"] is True
    assert (await s_ws.event("answer"))["data"]["from"] == "con"
    reply = await c_ws.request("pub", ch=ch, type="ice", data={"candidate": "c1"})
    assert reply["ok"] is True
    # Anything else is refused.
    refused = await s_ws.request("pub", ch=ch, type="tick", data={"minute": 99})
    assert refused["ok"] is False and refused["error"]["code"] == "unsupported_type"
    refused = await s_ws.request("pub", ch=ch, type="offer", data="not an object")
    assert refused["ok"] is False and refused["error"]["code"] == "bad_frame"
    # A third user can neither subscribe nor signal.
    eve = await api.socket(await api.login("eve", "student"))
    denied = await eve.request("sub", ch=ch)
    assert denied["ok"] is False and denied["error"]["code"] == "forbidden"
    denied = await eve.request("pub", ch=ch, type="offer", data={"sdp": "x"})
    assert denied["ok"] is False and denied["error"]["code"] == "forbidden"
    # After the end, no more calls.
    await api.post(pair.path + "/end", token=pair.student.token)
    refused = await s_ws.request("pub", ch=ch, type="offer", data={"sdp": "again"})
    assert refused["ok"] is False and refused["error"]["code"] == "not_active"


@pytest.mark.gen_test
async def test_engine_ignores_sessions_not_due(api, kpay_app):
    pair, _, _ = await live_session(api, rate=100, wallet=10_000)
    assert await engine_for(kpay_app).sweep() == 0
    assert (await state(api, pair))["billed_minutes"] == 1
