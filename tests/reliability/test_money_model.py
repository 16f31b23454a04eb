"""A stateful model of the money paths against the real app and database.

Hypothesis drives random sequences of what students, a host and a consultant do:
top-ups, live tickets, paid questions (answered, or refunded when the room ends),
course purchases and refunds, consultations billed per minute, replays of the same
order request, clock jumps. After every step the books must reconcile (postings sum to
zero, balances match postings, no wallet below zero, every paid order fulfilled or
refunded) and every wallet must hold exactly what the model says.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from reliability_helpers import EXAMPLES, STEPS, record_figures

from kpay.core.money.reconcile import reconcile

TICKET, COURSE, RATE = 990, 1990, 100
STUDENTS = ("s1", "s2", "s3")


def test_money_model(io_loop, api, kpay_app):
    tally: Counter[str] = Counter()

    def run(make):  # one call into the app, on the test's loop
        return io_loop.run_sync(make, timeout=60)

    class MoneyModel(RuleBasedStateMachine):

        @initialize()
        def world(self) -> None:
            tag = uuid.uuid4().hex[:6]  # every example has people of its own
            self.id = {name: f"{name}-{tag}" for name in (*STUDENTS, "host", "cons")}
            self.token: dict[str, str] = {}
            for name in STUDENTS:
                self.token[name] = run(lambda n=name: api.login(self.id[n], "student"))
            for name in ("host", "cons"):
                self.token[name] = run(lambda n=name: api.login(self.id[n], "consultant"))
            self.wallet = dict.fromkeys(STUDENTS, 0)
            self.tickets: set[str] = set()
            self.course_orders: dict[str, str] = {}
            self.room_live = True
            status, body = self.call("post", "/api/v1/rooms", "host", {
                "title": "模型直播间", "ticket_price": TICKET, "question_min_price": 500})
            assert status == 201, body
            self.room = body["room"]["id"]
            assert self.call("post", f"/api/v1/rooms/{self.room}/start", "host")[0] == 200
            status, body = self.call("post", "/api/v1/courses", "host", {
                "title": "模型课程", "price": COURSE,
                "lessons": [{"title": "第一课", "body": "正文"}]})
            assert status == 201, body
            self.course = body["course"]["id"]
            assert self.call("post", f"/api/v1/courses/{self.course}/publish", "host")[0] == 200
            assert self.call("put", "/api/v1/consultants/me", "cons", {
                "rate_per_minute": RATE, "min_minutes": 1, "max_minutes": 30})[0] == 200
            for name in STUDENTS[:2]:  # two start with money, one without
                self.top_up(name, 3000)

        def call(self, method: str, path: str, who: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:
            tally["requests"] += 1
            return run(lambda: api.request(method.upper(), path,
                                           body if body is not None else {},
                                           token=self.token[who], headers=headers))

        def order(self, who: str, item: dict[str, Any], key: str | None = None):
            headers = {"Idempotency-Key": key} if key else None
            return self.call("post", "/api/v1/orders", who,
                             {"item": item, "channel": "wallet"}, headers)

        # -- rules ---------------------------------------------------------------------

        @rule(who=st.sampled_from(STUDENTS),
              amount=st.sampled_from([1, 99, 500, 990, 2000, 5000]) | st.integers(1, 5000))
        def top_up(self, who: str, amount: int) -> None:
            run(lambda: api.topup(self.token[who], amount))
            self.wallet[who] += amount
            tally["top-ups"] += 1

        @rule(who=st.sampled_from(STUDENTS), replays=st.integers(1, 3))
        def buy_ticket(self, who: str, replays: int) -> None:
            key = uuid.uuid4().hex
            answers = [self.order(who, {"kind": "live_ticket", "room_id": self.room}, key)
                       for _ in range(replays)]
            tally["order requests replayed"] += replays - 1
            can = self.room_live and who not in self.tickets and self.wallet[who] >= TICKET
            for status, body in answers:
                assert (status == 201) == can, (status, body, self.wallet[who])
            if can:
                assert len({b["order"]["id"] for _, b in answers}) == 1  # one order
                self.wallet[who] -= TICKET
                self.tickets.add(who)
                tally["tickets"] += 1

        @rule(who=st.sampled_from(STUDENTS), bounty=st.integers(500, 3000))
        def ask_paid_question(self, who: str, bounty: int) -> None:
            status, body = self.order(who, {"kind": "live_question", "room_id": self.room,
                                            "text": "请问怎么准备？", "bounty": bounty})
            can = self.room_live and who in self.tickets and self.wallet[who] >= bounty
            assert (status == 201) == can, (status, body)
            if can:
                self.wallet[who] -= bounty
                tally["paid questions"] += 1

        @precondition(lambda self: self.room_live)
        @rule(data=st.data())
        def answer_a_question(self, data: st.DataObject) -> None:
            open_ = self.open_paid_questions()
            if not open_:
                return
            question = data.draw(st.sampled_from(sorted(open_)))
            status, body = self.call(
                "post", f"/api/v1/rooms/{self.room}/questions/{question}/answer",
                "host", {"text": "这样准备。"})
            assert status == 200, body
            tally["answers"] += 1

        def open_paid_questions(self) -> dict[str, tuple[str, int]]:
            """Paid questions still open, as the server lists them: {id: (asker, bounty)}."""
            status, body = self.call("get", f"/api/v1/rooms/{self.room}/questions", "host")
            assert status == 200, body
            by_user = {v: k for k, v in self.id.items()}
            return {q["id"]: (by_user[q["asker_id"]], q["bounty"])
                    for q in body["questions"] if q.get("paid") and q["status"] == "open"}

        @precondition(lambda self: self.room_live)
        @rule()
        def end_room(self) -> None:
            unanswered = self.open_paid_questions()
            status, body = self.call("post", f"/api/v1/rooms/{self.room}/end", "host")
            assert status == 200, body
            for who, bounty in unanswered.values():
                self.wallet[who] += bounty  # unanswered: back to the wallet
                tally["bounties refunded"] += 1
            self.room_live = False

        @rule(who=st.sampled_from(STUDENTS))
        def buy_course(self, who: str) -> None:
            status, body = self.order(who, {"kind": "course", "course_id": self.course})
            can = who not in self.course_orders and self.wallet[who] >= COURSE
            assert (status == 201) == can, (status, body)
            if can:
                assert body["order"]["status"] == "fulfilled", body
                self.course_orders[who] = body["order"]["id"]
                self.wallet[who] -= COURSE
                tally["course purchases"] += 1

        @precondition(lambda self: self.course_orders)
        @rule(data=st.data(), part=st.sampled_from(["full", "partial"]))
        def refund_course(self, data: st.DataObject, part: str) -> None:
            who = data.draw(st.sampled_from(sorted(self.course_orders)))
            order_id = self.course_orders[who]
            order = run(lambda: kpay_app.money.orders.get(order_id))
            amount = order["refundable"] if part == "full" else min(100, order["refundable"])
            if amount <= 0:
                return
            refund = run(lambda: kpay_app.money.orders.refund(
                order_id, amount, f"model-{uuid.uuid4().hex[:6]}", to="wallet"))
            assert refund["status"] == "succeeded"
            self.wallet[who] += amount
            if amount == order["refundable"]:
                del self.course_orders[who]  # fully refunded: may buy again
            tally["refunds"] += 1

        @rule(who=st.sampled_from(STUDENTS), minutes=st.integers(0, 4))
        def consultation(self, who: str, minutes: int) -> None:
            status, body = self.call("post", "/api/v1/consultations", who,
                                     {"consultant_id": self.id["cons"]})
            if self.wallet[who] < RATE:
                assert status == 402, body
                return
            assert status == 201, body
            consultation = body["consultation"]["id"]
            path = f"/api/v1/consultations/{consultation}"
            status, body = self.call("post", path + "/accept", "cons")
            assert status == 200, body
            if minutes:
                run(lambda: kpay_app.advance_clock(60 * minutes))
            status, body = self.call("post", path + "/end", who)
            assert status == 200, body
            status, receipt = self.call("get", path + "/receipt", who)
            assert status == 200, receipt
            receipt = receipt["receipt"]
            charged = receipt["booked"]  # what the ledger booked, minute by minute
            assert charged == RATE * len(receipt["minutes"]), receipt
            assert 0 < charged <= self.wallet[who], (receipt, self.wallet[who])
            self.wallet[who] -= charged
            tally["consultation minutes"] += charged // RATE

        @rule(seconds=st.sampled_from([30, 61, 600, 3600]))
        def time_passes(self, seconds: int) -> None:
            run(lambda: kpay_app.advance_clock(seconds))  # every job runs once
            tally["clock jumps"] += 1

        # -- invariants ------------------------------------------------------------------

        @invariant()
        def books_reconcile_and_wallets_match(self) -> None:
            if not hasattr(self, "wallet"):
                return
            report = run(lambda: reconcile(kpay_app.store.db, kpay_app.clock.now()))
            assert report.clean, report.text()
            for who, expected in self.wallet.items():
                wallet = run(lambda w=who: kpay_app.money.ledger.wallet(self.id[w]))
                assert wallet["balance"] == expected, (who, wallet, expected)
            tally["invariant checks"] += 1

    run_state_machine_as_test(MoneyModel, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=True,
        suppress_health_check=list(HealthCheck), print_blob=True))
    record_figures("money_model", {"examples": EXAMPLES, "steps": STEPS, **tally})
    assert tally["invariant checks"] > EXAMPLES  # the model really ran
