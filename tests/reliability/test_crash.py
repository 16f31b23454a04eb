"""Crash safety of every money write: a real server process dies at each named failpoint
(``kpay/core/failpoints.py``), is started again without it, and the books must hold.

For each failpoint the server runs as a subprocess on the session's database server
(a database of its own, dev mode, the scheduler on) with ``KPAY_FAILPOINT=<name>:<n>``.
The test drives a flow that passes the point (a consultation billed over a dev-clock
jump; a wallet top-up paid through WeChat Pay's notify and a course bought from the
wallet; a course paid through WeChat Pay and refunded to it), sees the process exit
with 137 at that point, starts it again without the failpoint, lets the jobs run
(``POST /api/v1/dev/clock``) or retries as a client would, and checks:

- ``reconcile`` is clean and no order is left ``paid`` (each is fulfilled or refunded);
- no fen is lost: the balances of all accounts (wallets, earnings, platform, external)
  sum to 0, and each one holds what the flow says it should;
- no consultation minute is billed twice (one ledger entry per minute, 1..n, matching
  the session), no order fulfilled twice (one enrolment, activated once), no refund
  paid out twice (by WeChat Pay or in the books).

WeChat Pay is the local fake (``plugins/wechat_pay/fake.py``) running in the test
process with TLS and a merchant certificate, so it outlives the server's crash the way
WeChat does. A refund to the original channel has no HTTP route (an operator's or a
plugin's call), so those cases run the same server through a small driver that also
performs the refund when the test asks for it.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from crash_servers import (
    FUNDS,
    RATE,
    ROOT,
    advance,
    check_books,
    fund,
    in_flight,
    join_both,
    minute_entries,
    server_now,
)
from reliability_helpers import record_figures

from kpay.core.failpoints import EXIT_STATUS, FAILPOINTS, parse
from kpay.core.store import Store
from kpay.testing import ApiClient, wait_until

Result = dict[str, Any]
RESULTS: dict[str, Result] = {}


@pytest.fixture(scope="module", autouse=True)
def report_results():
    """Print one line per failpoint at the end of the module (``-s`` shows it)."""
    yield
    if RESULTS:
        print("\nfailpoint                            kills exit  minutes twice  fen lost  "
              "detail")
        order = {name: i for i, name in enumerate(FAILPOINTS)}
        rows = []
        for case in sorted(RESULTS, key=lambda c: (order[c.split()[0]], c)):
            r = RESULTS[case]
            print(f"{case:36} {r['kills']:5} {r['exit']:4}  {r['twice']:13}  "
                  f"{r['lost']:8}  {r['detail']}")
            rows.append({"failpoint": case, "kills": r["kills"], "exit": r["exit"],
                         "minutes billed twice": r["twice"], "fen lost": r["lost"],
                         "what happened": r["detail"]})
        record_figures("crash", {"rows": rows})


# -- consultations: billing.* ----------------------------------------------------------

BILLING = ["billing.before_minute", "billing.after_minute", "billing.before_batch",
           "billing.after_batch"]


@pytest.mark.parametrize("failpoint", BILLING)
@pytest.mark.gen_test(timeout=90)
async def test_consultation_survives_a_crash_at(failpoint, deployments):
    server = deployments(["consult_billing"])
    await server.start(f"{failpoint}:1")
    api = server.api()
    student, consultant = await api.login("stu", "student"), await api.login("con", "consultant")
    status, body = await api.put("/api/v1/consultants/me",
                                 {"rate_per_minute": RATE, "max_minutes": 60}, consultant)
    assert status == 200, body
    store = server.store()
    await fund(store, "stu", FUNDS)
    status, body = await api.post("/api/v1/consultations", {"consultant_id": "con"}, student)
    assert status == 201, body
    cid = body["consultation"]["id"]
    path = f"/api/v1/consultations/{cid}"
    sockets = await join_both(api, path, cid, [student, consultant])
    if failpoint.endswith("_minute"):
        # Accept charges minute 1 alone, in its own transaction.
        await in_flight(api.post(path + "/accept", token=consultant))
    else:
        status, body = await api.post(path + "/accept", token=consultant)
        assert status == 200, body
        # A minute later the sweep charges minute 2 in a batch.
        await in_flight(api.post("/api/v1/dev/clock", {"advance": 61}, student))
    await server.killed_at(failpoint)
    for ws in sockets:
        ws.close()
    before = await minute_entries(store, cid)

    await server.start()
    _, body = await api.get(path, student)
    if body["status"] == "requested":  # died before minute 1 was written: accept again
        assert failpoint == "billing.before_minute" and not before, (body, before)
        sockets = await join_both(api, path, cid, [student, consultant])
        status, body = await api.post(path + "/accept", token=consultant)
        assert status == 200, body
    else:
        # The restart paused the session as of the dead process's last sign of life;
        # both come back and the meter resumes.
        assert body["status"] == "paused", body
        sockets = await join_both(api, path, cid, [student, consultant])
    await advance(api, student, 61)
    await advance(api, student, 61)
    status, body = await api.post(path + "/end", token=student)
    assert status == 200, body
    for ws in sockets:
        ws.close()

    doc = await store["consultations"].find_one({"_id": cid})
    billed = await minute_entries(store, cid)
    twice = sum(count - 1 for count in billed.values())
    assert twice == 0 and sorted(billed) == list(range(1, doc["minute"] + 1)), (billed, doc)
    # Whatever was billed before the crash stays billed, once.
    assert set(before) <= set(billed)
    assert doc["minute"] >= 3, doc  # minute 1 (or 2) before, two more after the restart
    found = await check_books(store, await server_now(api))
    charged = doc["minute"] * RATE
    assert found["wallet:stu"] == FUNDS - charged
    assert found["earnings:con"] + found["platform:revenue"] == charged
    RESULTS[failpoint] = {
        "kills": 1, "exit": EXIT_STATUS, "twice": twice, "lost": sum(found.values()),
        "detail": f"minutes before the kill {sorted(before) or '-'}, after {doc['minute']}"}


# -- a top-up paid through WeChat Pay, a course bought from the wallet -------------------

PRICE = 990
TOPUP = 5_000


async def publish_course(api: ApiClient) -> tuple[str, dict[str, Any]]:
    author = await api.login("teacher", "consultant")
    status, body = await api.post("/api/v1/courses", {
        "title": "Crash course", "price": PRICE,
        "lessons": [{"title": "L0", "body": "text"}]}, author)
    assert status == 201, body
    course = body["course"]
    status, body = await api.post(f"/api/v1/courses/{course['id']}/publish", token=author)
    assert status == 200, body
    return author, course


async def order_status(api: ApiClient, token: str, order_id: str) -> str:
    status, body = await api.get(f"/api/v1/orders/{order_id}", token)
    assert status == 200, body
    return body["order"]["status"]


async def wait_status(api: ApiClient, token: str, order_id: str, wanted: str,
                      timeout: float = 10.0) -> None:
    async def reached() -> bool:
        return await order_status(api, token, order_id) == wanted

    await wait_until(reached, timeout, interval=0.05, message=f"order {order_id} never {wanted}")


async def native_order(api: ApiClient, token: str, item: dict[str, Any]) -> dict[str, Any]:
    status, body = await api.post("/api/v1/orders", {"item": item, "channel": "native"}, token)
    assert status == 201, body
    assert body["order"]["status"] == "pending" and body["pay"]["code_url"], body
    return body["order"]


async def buy_course(api: ApiClient, token: str, course_id: str) -> tuple[int, Any]:
    # The client's Idempotency-Key: a retry after no answer is the same purchase.
    return await api.request("POST", "/api/v1/orders", {
        "item": {"kind": "course", "course_id": course_id}, "channel": "wallet"}, token,
        headers={"Idempotency-Key": "buy-crash-course"})


async def check_enrolled_once(store: Store, course_id: str, order_id: str,
                              status: str = "active") -> dict[str, Any]:
    enrollments = [e async for e in store["course_enrollments"].find({"course_id": course_id})]
    assert len(enrollments) == 1, enrollments
    enrollment = enrollments[0]
    assert enrollment["order_id"] == order_id and enrollment["status"] == status, enrollment
    return enrollment


SHOP = ["orders.mark_paid.before", "orders.mark_paid.after", "orders.fulfil.before_kind",
        "orders.fulfil.after_kind", "orders.fulfil.after_mark"]


@pytest.mark.parametrize("failpoint", SHOP)
@pytest.mark.gen_test(timeout=90)
async def test_purchase_survives_a_crash_at(failpoint, deployments, wechat):
    server = deployments(["wechat_pay", "course_drip"], wechat=wechat.settings)
    # The top-up passes mark_paid and fulfil once; the course purchase fulfils again.
    nth = 1 if failpoint.startswith("orders.mark_paid") else 2
    await server.start(f"{failpoint}:{nth}")
    api = server.api()
    _, course = await publish_course(api)
    student = await api.login("stu", "student")
    topup = await native_order(api, student, {"kind": "wallet_topup", "amount": TOPUP})
    wechat.fake.pay(topup["out_trade_no"])  # WeChat notifies the server
    store = server.store()
    if nth == 1:
        await server.killed_at(failpoint)
        # The server died inside the notify; settle_pending below asks WeChat instead.
        paid_before = await store["orders"].find_one({"_id": topup["id"]})
        state_at_kill = f"top-up {paid_before['status']}"
    else:
        await wait_status(api, student, topup["id"], "fulfilled")
        await in_flight(buy_course(api, student, course["id"]))
        await server.killed_at(failpoint)
        first = await store["orders"].find_one({"kind": "course"})
        # The purchase was paid in the transaction that created it; the crash came in
        # its fulfilment.
        assert first is not None and first["status"] in ("paid", "fulfilled"), first
        state_at_kill = f"course order {first['status']}"

    await server.start()
    # Jobs: settle_pending asks WeChat about the pending top-up (after 5 minutes);
    # fulfil_paid finishes paid orders once their lease has run out.
    await advance(api, student, 6 * 60)
    await wait_status(api, student, topup["id"], "fulfilled")
    # The client retries the purchase it got no answer to (or makes it now).
    status, body = await buy_course(api, student, course["id"])
    assert status in (200, 201), body
    order = body["order"]
    if nth == 2:
        assert order["id"] == first["_id"], (order, first)
    if order["status"] != "fulfilled":
        await advance(api, student, 3 * 60)
        await wait_status(api, student, order["id"], "fulfilled")

    orders = [o async for o in store["orders"].find({"user_id": "stu"})]
    assert sorted(o["kind"] for o in orders) == ["course", "wallet_topup"], orders
    enrollment = await check_enrolled_once(store, course["id"], order["id"])
    # Claimed (rev 1) and activated once (rev 2): a fulfilment run again after the
    # crash changed nothing.
    assert enrollment["rev"] == 2, enrollment
    found = await check_books(store, await server_now(api))
    assert found["wallet:stu"] == TOPUP - PRICE
    assert found["external:wechat_pay"] == -TOPUP
    assert found["earnings:teacher"] + found["platform:revenue"] == PRICE
    course_order = next(o for o in orders if o["kind"] == "course")
    RESULTS[failpoint] = {
        "kills": 1, "exit": EXIT_STATUS, "twice": "-", "lost": sum(found.values()),
        "detail": f"at the kill: {state_at_kill}; course fulfil attempts "
                  f"{course_order.get('fulfil_attempts')}, enrolment rev {enrollment['rev']}"}


# -- a course paid through WeChat Pay, refunded to it ------------------------------------

REFUNDS = ["refunds.before_reserve", "refunds.after_reserve", "refunds.after_provider",
           "refunds.after_booking"]


@pytest.mark.parametrize("failpoint", REFUNDS)
@pytest.mark.gen_test(timeout=90)
async def test_refund_survives_a_crash_at(failpoint, deployments, wechat):
    server = deployments(["wechat_pay", "course_drip"], wechat=wechat.settings, driver=True)
    await server.start(f"{failpoint}:1")
    api = server.api()
    _, course = await publish_course(api)
    student = await api.login("stu", "student")
    order = await native_order(api, student, {"kind": "course", "course_id": course["id"]})
    delivery = wechat.fake.pay(order["out_trade_no"])
    await delivery.done.wait()
    await wait_status(api, student, order["id"], "fulfilled")
    asked = {"order_id": order["id"], "amount": PRICE, "reason": "crash test",
             "key": "crashrefund1"}
    await server.refund(asked)
    await server.killed_at(failpoint)
    store = server.store()
    before = await store["refunds"].find_one({"_id": "crashrefund1"})
    paid_out_at_kill = len(wechat.fake.refunds)

    # The caller retries with the same key, as the refund's contract asks.
    await server.start()
    await server.refund(asked)
    answer = await server.refunded()
    assert answer == {"status": "succeeded", "id": "crashrefund1"}, answer

    refunds = [r async for r in store["refunds"].find({})]
    assert [(r["_id"], r["status"], r["amount"]) for r in refunds] == [
        ("crashrefund1", "succeeded", PRICE)]
    # WeChat paid it out once, and the books took it back once.
    fake_refunds = list(wechat.fake.refunds.values())
    assert [r["refund_fee"] for r in fake_refunds] == [PRICE], fake_refunds
    assert wechat.fake.orders[order["out_trade_no"]].refunded == PRICE
    booked = [e["_id"] async for e in store["ledger"].find({"_id": {"$regex": "^refund:"}})]
    assert booked == ["refund:crashrefund1"]
    stored = await store["orders"].find_one({"_id": order["id"]})
    assert (stored["status"], stored["refunded"], stored["refundable"]) == (
        "refunded", PRICE, 0), stored
    found = await check_books(store, await server_now(api))
    # The payment came in through WeChat and went back out through it; the author's
    # earnings and the platform's fee went back with it.
    assert found["external:wechat_pay"] == 0
    assert found.get("earnings:teacher", 0) == 0 and found.get("platform:revenue", 0) == 0
    enrollment = await store["course_enrollments"].find_one({"course_id": course["id"]})
    # The kind undid what fulfilment granted (Refunds._finish -> on_refund), also when
    # the crash came after the booking: the retry finishes the refund.
    assert enrollment["status"] == "revoked", enrollment
    RESULTS[failpoint] = {
        "kills": 1, "exit": EXIT_STATUS, "twice": "-", "lost": sum(found.values()),
        "detail": f"at the kill: refund {before['status'] if before else 'not written'}, "
                  f"WeChat paid out {paid_out_at_kill}x; after: paid out "
                  f"{len(fake_refunds)}x, booked {len(booked)}x, enrolment "
                  f"{enrollment['status']}"}


# -- a paid question refunded to the wallet when its live room ends ---------------------

WALLET_REFUNDS = ["refunds.before_reserve", "refunds.after_reserve"]
BOUNTY = 700


@pytest.mark.parametrize("failpoint", WALLET_REFUNDS)
@pytest.mark.gen_test(timeout=90)
async def test_wallet_refund_survives_a_crash_at(failpoint, deployments):
    """To the wallet, reserve and booking are one transaction; the live_qa sweep job
    finishes the refunds of an ended room after a crash."""
    server = deployments(["live_qa"])
    await server.start(f"{failpoint}:1")
    api = server.api()
    store = server.store()
    host = await api.login("host", "consultant")
    status, body = await api.post("/api/v1/rooms", {
        "title": "crash room", "ticket_price": 0, "question_min_price": 300}, host)
    assert status == 201, body
    room = body["room"]
    status, body = await api.post(f"/api/v1/rooms/{room['id']}/start", token=host)
    assert status == 200, body
    student = await api.login("stu", "student")
    await fund(store, "stu", TOPUP)
    for item in ({"kind": "live_ticket", "room_id": room["id"]},
                 {"kind": "live_question", "room_id": room["id"], "text": "unanswered?",
                  "bounty": BOUNTY}):
        status, body = await api.post("/api/v1/orders", {"item": item, "channel": "wallet"},
                                      student)
        assert status == 201 and body["order"]["status"] == "fulfilled", body
    await in_flight(api.post(f"/api/v1/rooms/{room['id']}/end", token=host))
    await server.killed_at(failpoint)
    before = await store["refunds"].find_one({})

    await server.start()
    await advance(api, host, 120)  # live_qa.refund_sweep: ended rooms' unfinished refunds
    for _ in range(100):
        question = await store["live_questions"].find_one({"room_id": room["id"]})
        if question is not None and question["status"] == "refunded":
            break
        await asyncio.sleep(0.05)
    assert question["status"] == "refunded", question
    refunds = [(r["order_id"], r["status"], r["amount"]) async for r in store["refunds"].find()]
    assert refunds == [(question["order_id"], "succeeded", BOUNTY)], refunds
    booked = [e["_id"] async for e in store["ledger"].find({"_id": {"$regex": "^refund:"}})]
    assert len(booked) == 1, booked
    found = await check_books(store, await server_now(api))
    assert found["wallet:stu"] == TOPUP and found["escrow:live_qa"] == 0
    RESULTS[f"{failpoint} (wallet)"] = {
        "kills": 1, "exit": EXIT_STATUS, "twice": "-", "lost": sum(found.values()),
        "detail": f"at the kill: refund {before['status'] if before else 'not written'}; "
                  f"after the sweep: booked {len(booked)}x, wallet whole"}


# -- the failpoints themselves ---------------------------------------------------------


def test_every_failpoint_is_placed_in_the_code_once():
    calls: Counter = Counter()
    for directory in ("kpay", "plugins"):
        for source in (ROOT / directory).rglob("*.py"):
            text = source.read_text()
            calls.update(re.findall(r"""failpoint\(["']([\w.]+)["']\)""", text))
    assert set(calls) == set(FAILPOINTS), set(calls) ^ set(FAILPOINTS)
    assert all(count == 1 for count in calls.values()), calls
    assert len(set(FAILPOINTS)) == len(FAILPOINTS)
    # Every one is driven by a case above.
    # payouts.after_transfer: tests/reliability/test_crash_payouts.py
    assert sorted(BILLING + SHOP + REFUNDS + ["payouts.after_transfer"]) == sorted(FAILPOINTS)


def test_failpoint_exits_137_on_the_nth_pass_and_is_a_no_op_otherwise():
    program = ("from kpay.core.failpoints import failpoint\n"
               "for i in range(5):\n"
               "    failpoint('orders.fulfil.after_kind')\n"
               "    failpoint('refunds.after_booking')\n"
               "    print(i, flush=True)\n")
    env = {k: v for k, v in os.environ.items() if k != "KPAY_FAILPOINT"}

    def run(value: str | None) -> subprocess.CompletedProcess:
        extra = {"KPAY_FAILPOINT": value} if value is not None else {}
        return subprocess.run([sys.executable, "-c", program], cwd=ROOT, env={**env, **extra},
                              capture_output=True, text=True, timeout=60)

    armed = run("billing.after_batch:1, orders.fulfil.after_kind:3")
    assert armed.returncode == EXIT_STATUS
    assert armed.stdout.split() == ["0", "1"]
    assert "kpay failpoint orders.fulfil.after_kind hit (pass 3)" in armed.stderr
    quiet = run(None)
    assert quiet.returncode == 0 and quiet.stdout.split() == ["0", "1", "2", "3", "4"]
    unknown = run("orders.fulfil.after_knd:1")
    assert unknown.returncode != 0 and "unknown failpoint" in unknown.stderr


def test_failpoint_setting_is_parsed_strictly():
    assert parse("") == {}
    assert parse("billing.after_batch") == {"billing.after_batch": 1}
    assert parse(" refunds.after_provider:4 ,billing.before_batch:2") == {
        "refunds.after_provider": 4, "billing.before_batch": 2}
    for bad in ("nope:1", "billing.after_batch:x", "billing.after_batch:0"):
        with pytest.raises(ValueError):
            parse(bad)
