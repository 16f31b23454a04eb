"""Caps on open consultation requests: per student and waiting per consultant."""

from __future__ import annotations

from typing import Any

import pytest
from consult_helpers import make_pair

REQUESTS = "/api/v1/consultations"


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": ["consult_billing"]},
            "consult_billing": {"max_open_requests_per_student": 2,
                                "max_waiting_requests_per_consultant": 3}}


async def consultant(api: Any, user_id: str) -> str:
    token = await api.login(user_id, "consultant")
    status, body = await api.put("/api/v1/consultants/me", {"rate_per_minute": 100}, token)
    assert status == 200, body
    return token


async def ask(api: Any, student: str, consultant_id: str) -> tuple[int, Any]:
    return await api.post(REQUESTS, {"consultant_id": consultant_id}, student)


@pytest.mark.gen_test
async def test_a_student_has_at_most_n_open_requests(api, clock):
    pair = await make_pair(api, consultant="con1")
    await consultant(api, "con2")
    await consultant(api, "con3")
    student = pair.student.token
    status, first = await ask(api, student, "con1")
    assert status == 201, first
    status, body = await ask(api, student, "con2")
    assert status == 201, body
    status, body = await ask(api, student, "con3")
    assert status == 409, body
    assert body["error"]["code"] == "too_many_open"
    assert (body["error"]["what"], body["error"]["limit"]) == ("consult_requests", 2)

    # Cancelling one frees a place.
    status, body = await api.post(f"{REQUESTS}/{first['consultation']['id']}/end",
                                  token=student)
    assert status == 200 and body["consultation"]["status"] == "ended", body
    status, body = await ask(api, student, "con3")
    assert status == 201, body
    status, body = await ask(api, student, "con1")
    assert status == 409 and body["error"]["code"] == "too_many_open"

    # So does a request that expired unanswered (the engine ends it, or not yet).
    await clock.advance(api.app.settings.consult_billing.request_timeout_seconds + 1)
    status, body = await ask(api, student, "con1")
    assert status == 201, body


@pytest.mark.gen_test
async def test_a_consultant_has_at_most_n_requests_waiting(api):
    await consultant(api, "con")
    students = []
    for n in range(4):
        token = await api.login(f"s{n}", "student")
        await api.topup(token, 1000)
        students.append(token)
    ids = []
    for token in students[:3]:
        status, body = await ask(api, token, "con")
        assert status == 201, body
        ids.append(body["consultation"]["id"])
    status, body = await ask(api, students[3], "con")
    assert status == 409, body
    assert body["error"]["code"] == "too_many_open"
    assert (body["error"]["what"], body["error"]["limit"]) == ("consultant_requests", 3)

    # The consultant declines one: the next student gets in.
    con = await api.login("con", "consultant")
    status, body = await api.post(f"{REQUESTS}/{ids[0]}/decline", token=con)
    assert status == 200, body
    status, body = await ask(api, students[3], "con")
    assert status == 201, body
