"""Crash safety under load: a kpay process killed (SIGKILL) at a random moment while
students buy courses from their wallets and a consultation is billed minute by minute,
then started again; clients retry what got no answer, as they should. After every
restart the books must hold: reconcile clean, no order left paid, no fen lost, every
minute billed once, one order per retried request.

CI runs two kills with a fixed seed; ``make reliability`` runs many more
(``KPAY_RELIABILITY_RANDOM_KILLS``), the seed still fixed so a failure can be replayed.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest
import tornado.httpclient
from crash_servers import FUNDS, RATE, check_books, fund, join_both, minute_entries, server_now
from reliability_helpers import record_figures

KILLS = int(os.environ.get("KPAY_RELIABILITY_RANDOM_KILLS", "2"))
SEED = int(os.environ.get("KPAY_RELIABILITY_SEED", "20261201"))
STUDENTS = ("r1", "r2", "r3")
PRICE = 990


async def quietly(call):
    """A request that may meet the kill: its answer, or None when it got none."""
    try:
        return await call
    except (OSError, tornado.httpclient.HTTPClientError):
        return None


async def retried(call, seconds: float = 120):
    """Retry as a client does until an answer other than a timeout or a 5xx: a request
    that needs what a killed process's open transaction holds waits until the database
    drops that transaction (60 s)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        answer = await quietly(call())
        if answer is not None and answer[0] < 500:
            return answer
        assert asyncio.get_running_loop().time() < deadline, answer
        await asyncio.sleep(1)


@pytest.mark.gen_test(timeout=1800)
async def test_random_kills_under_load(deployments):
    rng = random.Random(SEED)
    server = deployments(["consult_billing", "course_drip"])
    await server.start()
    api, store = server.api(), server.store()
    tokens = {s: await api.login(s, "student") for s in STUDENTS}
    author, consultant = await api.login("teacher", "consultant"), await api.login("con",
                                                                                 "consultant")
    assert (await api.put("/api/v1/consultants/me", {"rate_per_minute": RATE,
                                                      "max_minutes": 600}, consultant))[0] == 200
    for student in STUDENTS:
        await fund(store, student, FUNDS)
    courses = []
    for n in range(KILLS):
        status, body = await api.post("/api/v1/courses", {
            "title": f"第{n}期", "price": PRICE, "lessons": [{"title": "L", "body": "b"}]},
            author)
        assert status == 201, body
        courses.append(body["course"]["id"])
        assert (await api.post(f"/api/v1/courses/{courses[-1]}/publish", token=author))[0] \
            == 200
    status, body = await api.post("/api/v1/consultations", {"consultant_id": "con"},
                                  tokens["r1"])
    assert status == 201, body
    cid = body["consultation"]["id"]
    path = f"/api/v1/consultations/{cid}"
    sockets = await join_both(api, path, cid, [tokens["r1"], consultant])
    assert (await api.post(path + "/accept", token=consultant))[0] == 200
    figures = {"kills": 0, "purchases retried": 0, "orders": 0, "minutes billed": 0,
               "minutes billed twice": 0, "fen lost": 0}

    def buy(student: str, course: str):
        return api.request("POST", "/api/v1/orders", {
            "item": {"kind": "course", "course_id": course}, "channel": "wallet"},
            token=tokens[student], headers={"Idempotency-Key": f"{student}-{course}"})

    for round_, course in enumerate(courses):
        async def load(course: str) -> None:
            for student in STUDENTS:
                await quietly(buy(student, course))
                await quietly(api.post("/api/v1/dev/clock", {"advance": 61}, tokens["r2"]))

        running = asyncio.ensure_future(load(course))
        await asyncio.sleep(rng.uniform(0.02, 0.6))
        server.process.kill()  # SIGKILL: no goodbye, transactions left open
        await server.died()
        await running
        figures["kills"] += 1
        for ws in sockets:
            ws.close()

        await server.start()
        # Clients retry with the same key: one order each, however often asked.
        for student in STUDENTS:
            status, body = await retried(lambda s=student, c=course: buy(s, c))
            assert status == 201, (round_, student, body)
            # Paid before the kill but not yet fulfilled: the fulfil job finishes it.
            assert body["order"]["status"] in ("paid", "fulfilled"), body
            figures["purchases retried"] += 1
        sockets = await join_both(api, path, cid, [tokens["r1"], consultant])
        await api.post("/api/v1/dev/clock", {"advance": 61}, tokens["r2"])
        await api.post("/api/v1/dev/clock", {"advance": 61}, tokens["r2"])
        found = await check_books(store, await server_now(api))
        billed = await minute_entries(store, cid)
        assert all(count == 1 for count in billed.values()), billed
        orders = [o async for o in store["orders"].find({"kind": "course"})]
        per_request = {(o["user_id"], o["item"]["course_id"]) for o in orders}
        assert len(orders) == len(per_request) == len(STUDENTS) * (round_ + 1), orders
        figures["fen lost"] += sum(found.values())

    assert (await api.post(path + "/end", token=tokens["r1"]))[0] == 200
    for ws in sockets:
        ws.close()
    found = await check_books(store, await server_now(api))
    billed = await minute_entries(store, cid)
    doc = await store["consultations"].find_one({"_id": cid})
    assert sorted(billed) == list(range(1, doc["minute"] + 1)), (billed, doc)
    assert found["wallet:r1"] == FUNDS - KILLS * PRICE - doc["minute"] * RATE
    figures.update({"orders": len(STUDENTS) * KILLS, "minutes billed": doc["minute"],
                    "minutes billed twice": sum(c - 1 for c in billed.values()),
                    "seed": SEED})
    record_figures("crash_random", figures)
