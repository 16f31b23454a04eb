"""Profiles, requests, accept/decline/expiry and the bad input around them."""

import pytest
from consult_helpers import make_pair, request, state, wallet

from kpay.testing import assert_books_balanced


@pytest.mark.gen_test
@pytest.mark.parametrize("rate", [0, -100, 1.5, "100", 10**12, None, True])
async def test_bad_rate_values(api, rate):
    token = await api.login("con", "consultant")
    status, body = await api.put("/api/v1/consultants/me", {"rate_per_minute": rate}, token)
    assert status == 400, body
    assert body["error"]["field"] == "rate_per_minute"
    status, body = await api.get("/api/v1/consultants/me", token)
    assert status == 404  # nothing was saved


@pytest.mark.gen_test
async def test_bad_profile_values(api):
    token = await api.login("con", "consultant")
    for bad, field in (({"rate_per_minute": 100, "min_minutes": 0}, "min_minutes"),
                       ({"rate_per_minute": 100, "min_minutes": 5, "max_minutes": 2}, "body"),
                       ({"rate_per_minute": 100, "max_minutes": 100_000}, "max_minutes"),
                       ({"rate_per_minute": 100, "colour": "red"}, "colour")):
        status, body = await api.put("/api/v1/consultants/me", bad, token)
        assert status == 400, (bad, body)
        assert body["error"]["field"] == field, body
    student = await api.login("stu", "student")
    status, body = await api.put("/api/v1/consultants/me", {"rate_per_minute": 100}, student)
    assert status == 403


@pytest.mark.gen_test
async def test_public_listing(api):
    pair = await make_pair(api, rate=300)
    other = await api.login("con2", "consultant")
    await api.put("/api/v1/consultants/me", {"rate_per_minute": 200, "available": False}, other)
    status, body = await api.get("/api/v1/consultants")
    assert status == 200
    assert [(c["consultant_id"], c["rate_per_minute"], c["busy"])
            for c in body["consultants"]] == [("con", 300, False)]
    status, body = await api.get("/api/v1/consultants/con2")
    assert status == 200 and body["profile"]["available"] is False
    status, body = await api.get("/api/v1/consultants/nobody")
    assert status == 404
    assert pair.consultant.user_id == "con"


@pytest.mark.gen_test
async def test_request_needs_the_minimum_minutes(api, kpay_app):
    pair = await make_pair(api, rate=100, min_minutes=5, wallet=499)
    status, body = await api.post("/api/v1/consultations", {"consultant_id": "con"},
                                  pair.student.token)
    assert status == 402, body
    assert body["error"]["code"] == "insufficient_balance" and body["error"]["needed"] == 500
    assert await kpay_app.store["consultations"].count_documents({}) == 0
    await api.topup(pair.student.token, 1)
    consultation = await request(api, pair)
    assert consultation["status"] == "requested" and consultation["billed_minutes"] == 0


@pytest.mark.gen_test
async def test_request_bad_input(api, kpay_app):
    pair = await make_pair(api, rate=100)
    # yourself (a consultant's id logged in as a student)
    me = await api.login("con", "student")
    await api.topup(me, 1000)
    status, body = await api.post("/api/v1/consultations", {"consultant_id": "con"}, me)
    assert status == 400 and body["error"]["code"] == "cannot_consult_self", body
    # Signing in as a student switched con's stored role: the consultant token is over.
    status, body = await api.get("/api/v1/me", pair.consultant.token)
    assert status == 401 and body["error"]["code"] == "token_revoked"
    consultant = await api.login("con", "consultant")
    for bad in ({}, {"consultant_id": ""}, {"consultant_id": 7}, []):
        status, body = await api.post("/api/v1/consultations", bad, pair.student.token)
        assert status == 400, body
    status, body = await api.post("/api/v1/consultations", {"consultant_id": "ghost"},
                                  pair.student.token)
    assert status == 404 and body["error"]["code"] == "consultant_not_found"
    status, body = await api.post("/api/v1/consultations", {"consultant_id": "con"},
                                  consultant)
    assert status == 403
    await api.put("/api/v1/consultants/me", {"rate_per_minute": 100, "available": False},
                  consultant)
    status, body = await api.post("/api/v1/consultations", {"consultant_id": "con"},
                                  pair.student.token)
    assert status == 409 and body["error"]["code"] == "consultant_unavailable"
    assert await kpay_app.store["consultations"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_busy_consultant(api, kpay_app):
    pair = await make_pair(api, rate=100)
    first = await request(api, pair)
    second_student = await api.login("stu2", "student")
    await api.topup(second_student, 1000)
    status, second = await api.post("/api/v1/consultations", {"consultant_id": "con"},
                                    second_student)
    assert status == 201  # requests may queue up while the consultant is free
    status, _ = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 200
    # Busy now: no new requests, and the queued one cannot be accepted.
    status, body = await api.post("/api/v1/consultations", {"consultant_id": "con"},
                                  second_student)
    assert status == 409 and body["error"]["code"] == "consultant_busy"
    second_path = f"/api/v1/consultations/{second['consultation']['id']}"
    status, body = await api.post(second_path + "/accept", token=pair.consultant.token)
    assert status == 409 and body["error"]["code"] == "consultant_busy"
    assert await wallet(api, Party("stu2", second_student)) == 1000
    status, body = await api.get("/api/v1/consultants/con")
    assert body["profile"]["busy"] is True
    # Free again after the end: the queued request can be accepted.
    await api.post(pair.path + "/end", token=pair.student.token)
    status, body = await api.post(second_path + "/accept", token=pair.consultant.token)
    assert status == 200, body
    assert first["id"] != second["consultation"]["id"]
    await assert_books_balanced(kpay_app)


class Party:
    def __init__(self, user_id, token):
        self.user_id, self.token = user_id, token


@pytest.mark.gen_test
async def test_accept_twice_and_someone_elses_request(api, kpay_app):
    pair = await make_pair(api, rate=100)
    await request(api, pair)
    other = await api.login("con2", "consultant")
    status, body = await api.post(pair.path + "/accept", token=other)
    assert status == 404 and body["error"]["code"] == "consultation_not_found"
    status, body = await api.post(pair.path + "/accept", token=pair.student.token)
    assert status == 403
    status, body = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 200 and body["consultation"]["billed_minutes"] == 1
    status, body = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 409 and body["error"]["code"] == "not_requested"
    assert (await state(api, pair))["charged"] == 100
    assert await wallet(api, pair.student) == 9_900
    status, body = await api.post("/api/v1/consultations/nope/accept",
                                  token=pair.consultant.token)
    assert status == 404
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_decline_and_cancel_charge_nothing(api, kpay_app):
    pair = await make_pair(api, rate=100)
    await request(api, pair)
    status, body = await api.post(pair.path + "/decline", token=pair.consultant.token)
    assert status == 200 and body["consultation"]["end_reason"] == "declined"
    status, body = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 409
    await request(api, pair)
    status, body = await api.post(pair.path + "/end", token=pair.student.token)
    assert status == 200 and body["consultation"]["end_reason"] == "cancelled"
    status, body = await api.post(pair.path + "/decline", token=pair.consultant.token)
    assert status == 409
    assert await wallet(api, pair.student) == 10_000
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_unanswered_request_expires(api, kpay_app):
    pair = await make_pair(api, rate=100)
    await request(api, pair)
    ws = await api.socket(pair.student.token)
    await ws.request("sub", ch=f"consult:{pair.consultation_id}")
    await kpay_app.advance_clock(121)
    ended = await ws.event("ended")
    assert ended["data"]["reason"] == "expired"
    status, body = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 409
    body = await state(api, pair)
    assert (body["status"], body["charged"]) == ("ended", 0)
    assert await wallet(api, pair.student) == 10_000


@pytest.mark.gen_test
async def test_accept_when_wallet_was_emptied(api, kpay_app):
    pair = await make_pair(api, rate=100, wallet=100)
    await request(api, pair)
    await kpay_app.money.ledger.post(
        "test-drain", [("wallet:stu", -100), ("external:elsewhere", 100)], "drain")
    status, body = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 409 and body["error"]["code"] == "funds_exhausted"
    body = await state(api, pair)
    assert (body["status"], body["end_reason"], body["charged"]) == (
        "ended", "funds_exhausted", 0)
    status, body = await api.get("/api/v1/consultants/con")
    assert body["profile"]["busy"] is False
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_consultant_request_notification(api):
    pair = await make_pair(api, rate=100)
    ws = await api.socket(pair.consultant.token)
    await ws.request("sub", ch="user:con")
    consultation = await request(api, pair)
    event = await ws.event("consult_request")
    assert event["data"]["consultation"]["id"] == consultation["id"]
