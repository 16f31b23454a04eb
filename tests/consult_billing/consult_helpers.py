"""Helpers for the consult_billing tests: a consultant, a student with money, a session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kpay.testing import wait_until


@dataclass
class Party:
    user_id: str
    token: str


@dataclass
class Pair:
    student: Party
    consultant: Party
    consultation_id: str = ""

    @property
    def path(self) -> str:
        return f"/api/v1/consultations/{self.consultation_id}"


async def make_pair(api: Any, rate: int = 100, wallet: int = 10_000, min_minutes: int = 1,
                    max_minutes: int = 60, student: str = "stu",
                    consultant: str = "con") -> Pair:
    pair = Pair(Party(student, await api.login(student, "student")),
                Party(consultant, await api.login(consultant, "consultant")))
    status, body = await api.put("/api/v1/consultants/me", {
        "rate_per_minute": rate, "min_minutes": min_minutes, "max_minutes": max_minutes},
        pair.consultant.token)
    assert status == 200, body
    if wallet:
        await api.topup(pair.student.token, wallet)
    return pair


async def request(api: Any, pair: Pair) -> dict[str, Any]:
    status, body = await api.post("/api/v1/consultations",
                                  {"consultant_id": pair.consultant.user_id}, pair.student.token)
    assert status == 201, body
    pair.consultation_id = body["consultation"]["id"]
    return body["consultation"]


async def join(api: Any, party: Party, pair: Pair) -> Any:
    ws = await api.socket(party.token)
    reply = await ws.request("sub", ch=f"consult:{pair.consultation_id}")
    assert reply["ok"] is True, reply
    return ws


async def state(api: Any, pair: Pair) -> dict[str, Any]:
    status, body = await api.get(pair.path, pair.student.token)
    assert status == 200, body
    return body


async def wait_for_state(api: Any, pair: Pair, check: Any,
                         timeout: float = 5.0) -> dict[str, Any]:
    """Poll the consultation until ``check(body)`` holds (socket effects are async)."""
    async def reached() -> dict[str, Any] | None:
        body = await state(api, pair)
        return body if check(body) else None

    return await wait_until(reached, timeout, message="consultation never reached the state")


async def live_session(api: Any, **options: Any) -> tuple[Pair, Any, Any]:
    """Requested, both parties on the channel, accepted (minute 1 charged)."""
    pair = await make_pair(api, **options)
    await request(api, pair)
    student_ws = await join(api, pair.student, pair)
    consultant_ws = await join(api, pair.consultant, pair)
    await wait_for_state(api, pair, lambda b: all(b["present"].values()))
    status, body = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 200, body
    return pair, student_ws, consultant_ws


async def wallet(api: Any, party: Party) -> int:
    status, body = await api.get("/api/v1/wallet", party.token)
    assert status == 200
    return body["balance"]


async def ledger_minutes(app: Any, consultation_id: str) -> list[str]:
    keys = [d["_id"] async for d in app.store["ledger"].find(
        {"_id": {"$regex": f"^consult:{consultation_id}:"}})]
    return sorted(keys, key=lambda k: int(k.rsplit(":", 1)[1]))
