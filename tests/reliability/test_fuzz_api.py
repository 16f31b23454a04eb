"""Fuzz every operation of the API with schemathesis, checking bodies, not only statuses.

The test app (``kpay_app``: every built-in plugin, dev mode, the local fake WeChat Pay)
serves its own OpenAPI document; schemathesis generates requests from it, positive
(data the schema allows) and negative (data it does not), sends them as a student, a
consultant, an admin and nobody, and checks each answer:

- ``not_a_server_error``: no 5xx (a 500 is a bug: fix the handler, keep a regression
  test next to the route's other tests);
- ``response_schema_conformance``: the body matches the schema of its status
  (``@api(response=...)``, or the error envelope);
- ``status_code_conformance`` and ``content_type_conformance``.

So that successes are checked too, not only refusals, the test first makes real
objects (a live room with questions and a chat message, a course, consultations,
orders, a signed WeChat payment notify, an attention entry). A first pass sends their
ids (and a few bodies) to every operation; the second pass generates the data, offering
the ids beside generated strings. Every operation but two (a refund notify needs a
refund WeChat encrypted, the OAuth callback a browser's login cookie) must have
answered a success. ``POST /api/v1/dev/clock`` is not fuzzed: it moves time for the
whole app; it is called once with a one-second advance. Nothing leaves 127.0.0.1:
redirects are not followed, and WeChat is the local fake.

The app runs on the test's IO loop; schemathesis's calls are synchronous, so the
fuzzing runs in a worker thread (``asyncio.to_thread``) while the loop serves it.

Deterministic: a fixed hypothesis seed. ``KPAY_FUZZ_EXAMPLES`` (default 8) is the
number of examples per operation, role and mode; ``KPAY_FUZZ_SEED`` another seed;
``KPAY_FUZZ_ONLY`` fuzzes only the operations whose "METHOD /path" contains it. A run
prints its figures (``-s`` shows them):

    KPAY_FUZZ_EXAMPLES=50 .venv/bin/python -m pytest -q -p no:cacheprovider -s \\
        tests/reliability/test_fuzz_api.py
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from pydantic import BaseModel
from reliability_helpers import record_figures
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kpay import hookimpl
from kpay.core.web import BaseHandler, Route, api
from kpay.testclients import wait_until
from kpay.testing import FakePayoutProvider, FakeProviderPlugin
from plugins.live_qa import history
from plugins.wechat_pay import runtime_of, signing

# Schemathesis's own strategies draw from `random` (its warning, not ours).
pytestmark = pytest.mark.filterwarnings(
    "ignore::hypothesis.errors.HypothesisDeprecationWarning")

EXAMPLES = int(os.environ.get("KPAY_FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("KPAY_FUZZ_SEED", "20260302"))
#: Fuzz only the operations whose "METHOD /path" contains this (a debugging aid).
ONLY = os.environ.get("KPAY_FUZZ_ONLY", "")
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]
ROLES = ("student", "consultant", "admin")
ROLES_AND_NOBODY = (*ROLES, "nobody")
#: Moves the clock of the whole app (billing, drip release, expiry): called once, bounded.
NOT_FUZZED = {("POST", "/api/v1/dev/clock")}
#: The dev panel's resets (back to real time; wipe every document): called once each, last.
RESETS = (("/api/v1/dev/clock/reset", {}), ("/api/v1/dev/reset", {"confirm": "reset"}))
NOT_FUZZED |= {("POST", path) for path, _ in RESETS}
#: End the caller's tokens: each call gets a token of its own, from a user of its own.
ENDS_TOKENS = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/logout-everywhere")}
#: Cannot succeed without a refund WeChat encrypted, or the browser's login state cookie.
NEED_WECHAT = {"POST /api/v1/pay/wechat/refund-notify", "GET /api/v1/wechat/oauth/callback",
               # ... or a transfer WeChat signed (once its provider pays out)
               "POST /api/v1/pay/wechat/transfer-notify",
               # The fake payout provider's notifies carry its signature in a header.
               "POST /api/v1/pay/fuzzpay/notify", "POST /api/v1/pay/fuzzpay/refund-notify",
               "POST /api/v1/pay/fuzzpay/transfer-notify"}
#: A chunk of an upload needs a Content-Range header matching its body, which the
#: OpenAPI document cannot make the fuzzer send (tests/media covers it).
NEED_HEADERS = {"PUT /api/v1/media/uploads/{upload_id}"}
#: Change or end the seeded objects: fuzzed after everything else.
LAST = ("/members/", "/unpublish", "/block", "/role", "/logout", "/end", "/takedown")


def tiny_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 24), (20, 120, 200)).save(out, "PNG")
    return out.getvalue()


FUZZ_PNG = tiny_png()


def tiny_wav() -> bytes:
    import io
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(b"\x00\x01" * 8000)
    return out.getvalue()


FUZZ_WAV = tiny_wav()


@pytest.fixture
def kpay_overrides():
    # A long run (KPAY_FUZZ_EXAMPLES=100) takes longer than a consultation request waits
    # by default: the seeded request stays acceptable for the whole run.
    return {"consult_billing": {"request_timeout_seconds": 24 * 3600},
            # The seeded earnings are withdrawable at once; big payouts wait for an admin.
            "payouts": {"hold_days": 0, "approval_above": 5000},
            # One subscription template, so that a consent can be recorded.
            "wechat_notify": {"kinds": {"audience_message": {"mode": "subscribe",
                                                             "template_id": "FUZZ_SUB"}}}}


@pytest.fixture
def kpay_extra_plugins():
    # No built-in provider pays out yet: the payout routes go through the fake one.
    return [("fuzz_payouts", FakeProviderPlugin(FakePayoutProvider("fuzzpay", ("fuzzpay_qr",))))]


@dataclass
class Found:
    """One distinct failure: an operation, a check and the status it answered."""

    operation: str
    check: str
    status: int
    role: str
    mode: str
    message: str
    curl: str


@dataclass
class Report:
    operations: int = 0
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[tuple[str, str, int], Found] = field(default_factory=dict)
    counts: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    unsatisfiable: list[str] = field(default_factory=list)
    #: Operations that answered a success (2xx/3xx) at least once: their schemas were
    #: checked against real successes, not only refusals.
    succeeded: set[str] = field(default_factory=set)
    seconds: float = 0.0

    def add(self, found: Found) -> None:
        key = (found.operation, found.check, found.status)
        self.counts[key] += 1
        self.failures.setdefault(key, found)

    def summary(self) -> str:
        server_errors = sum(n for (_, check, _), n in self.counts.items()
                            if check == "not_a_server_error")
        schema = sum(n for (_, check, _), n in self.counts.items()
                     if check == "response_schema_conformance")
        return (f"schemathesis: {self.operations} operations fuzzed, {self.requests} requests "
                f"in {self.seconds:.0f} s ({EXAMPLES} examples per operation, role and mode, "
                f"seed {SEED}); statuses {dict(sorted(self.statuses.items()))}; "
                f"{len(self.succeeded)} operations answered a success; "
                f"{server_errors} server errors, {schema} schema violations, "
                f"{len(self.failures)} distinct failures")

    def text(self) -> str:
        lines = [self.summary()]
        for key, found in sorted(self.failures.items()):
            lines += [f"\n{found.operation} [{found.check}, {found.status}, as {found.role}, "
                      f"{found.mode}] x{self.counts[key]}", found.message.strip()[:1500],
                      f"reproduce: {found.curl}"]
        return "\n".join(lines)


def check_names(error: BaseException) -> list[tuple[str, str]]:
    """``(check, message)`` of each failure in what ``validate_response`` raised."""
    failures = error.exceptions if isinstance(error, FailureGroup) else [error]
    out = []
    for failure in failures:
        checks = getattr(failure, "checks", None) or ("?",)
        name = next((c for c in checks if c in {f.__name__ for f in CHECKS}), checks[0])
        title = getattr(failure, "title", "") or type(failure).__name__
        out.append((name, f"{title}: {getattr(failure, 'message', failure)}"))
    return out


# -- what the fuzzer may pick besides generated strings -----------------------------------


@dataclass
class Seeded:
    """Ids of real objects, offered for path and query parameters."""

    path: dict[str, list[str]]
    query: dict[str, list[str]]
    #: ``(path, parameter)`` or ``(METHOD, path, parameter)``: the value the seeded run
    #: sends there instead of the first.
    only: dict[tuple[str, ...], str] = field(default_factory=dict)
    #: ``(METHOD, path)``: a body the seeded run sends.
    bodies: dict[tuple[str, str], Any] = field(default_factory=dict)


async def seed_objects(api: Any, app: Any, tokens: dict[str, str]) -> Seeded:
    student, consultant, admin = (tokens[r] for r in ROLES)

    async def call(method: str, path: str, body: Any = None, token: str = "",
                   expect: int = 200) -> Any:
        status, reply = await api.request(method, path, body, token)
        assert status == expect, (method, path, status, reply)
        return reply

    await api.topup(student, 500_000)
    await call("PUT", "/api/v1/consultants/me", {"rate_per_minute": 100, "max_minutes": 30},
               consultant)
    live = (await call("POST", "/api/v1/rooms", {"title": "fuzz live", "chat": True},
                       consultant, 201))["room"]
    await call("POST", f"/api/v1/rooms/{live['id']}/start", {}, consultant)
    scheduled = (await call("POST", "/api/v1/rooms", {"title": "fuzz later",
                                                      "ticket_price": 100}, consultant, 201))
    ticket = await call("POST", "/api/v1/orders", {
        "item": {"kind": "live_ticket", "room_id": live["id"]}, "channel": "wallet"},
        student, 201)
    question = (await call("POST", f"/api/v1/rooms/{live['id']}/questions",
                           {"text": "fuzz question"}, student, 201))["question"]
    # A question of someone else, for the student's 同问.
    asker = await api.login("fuzz-asker", "student")
    await api.topup(asker, 1000)
    await call("POST", "/api/v1/orders", {
        "item": {"kind": "live_ticket", "room_id": live["id"]}, "channel": "wallet"},
        asker, 201)
    # A paid order for operators' refunds: the asker's ticket to the scheduled room.
    bought = await call("POST", "/api/v1/orders", {
        "item": {"kind": "live_ticket", "room_id": scheduled["room"]["id"]},
        "channel": "wallet"}, asker, 201)
    other = (await call("POST", f"/api/v1/rooms/{live['id']}/questions",
                        {"text": "fuzz question too"}, asker, 201))["question"]
    said = await history.publish(app, live["id"], "message",
                                 {"text": "fuzz chat", "from": "fuzz-consultant"})
    course = (await call("POST", "/api/v1/courses", {
        "title": "fuzz course", "price": 100, "lessons": [
            {"title": "now", "body": "# open"},
            {"title": "later", "body": "in three days", "release": {"after_days": 3}},
            {"title": "next", "body": "after the first", "release": {"after_previous": True}},
            {"title": "hidden", "body": "withdrawn, to be deleted", "published": False},
        ]}, consultant, 201))["course"]
    await call("POST", f"/api/v1/courses/{course['id']}/publish", {}, consultant)
    await call("POST", f"/api/v1/courses/{course['id']}/enrollments",
               {"user_id": "fuzz-student"}, consultant, 201)
    consultation, declined = [(await call("POST", "/api/v1/consultations", {
        "consultant_id": "fuzz-consultant"}, student, 201))["consultation"] for _ in range(2)]
    pending = await call("POST", "/api/v1/orders", {
        "item": {"kind": "wallet_topup", "amount": 1000}, "channel": "native"}, student, 201)
    # WeChat's payment notify for it, signed with the (fake) merchant's key.
    merchant = runtime_of(app).settings
    notify = {"return_code": "SUCCESS", "result_code": "SUCCESS", "appid": merchant.appid,
              "mch_id": merchant.mch_id, "nonce_str": "fuzz", "trade_type": "NATIVE",
              "out_trade_no": pending["order"]["out_trade_no"], "total_fee": "1000",
              "transaction_id": "fuzz-transaction"}
    notify["sign"] = signing.sign(notify, merchant.api_key)
    # Paid at the (fake) WeChat too, so an operator's refund of it to the original
    # channel is one WeChat makes.
    fake = runtime_of(app).fake
    fake.orders[pending["order"]["out_trade_no"]].trade_state = "SUCCESS"
    # An order paid after kpay closed it: a needs-attention entry with a one-click refund.
    late = (await call("POST", "/api/v1/orders", {
        "item": {"kind": "wallet_topup", "amount": 500}, "channel": "native"},
        student, 201))["order"]
    await app.money.orders.close(late["id"], "expired")
    fake.pay(late["out_trade_no"])
    await wait_until(lambda: app.attention.collection.count_documents(
        {"subject": f"order:{late['id']}"}))
    late_entry = await app.attention.collection.find_one({"subject": f"order:{late['id']}"})
    await app.attention.report("fuzz", "order:o-fuzz", "seeded for the fuzzer")
    # Payouts: earnings and an openid for the consultant, two payouts waiting for an
    # admin (approve, reject) and two for the consultant's confirmation (cancel, confirm).
    await app.store["users"].update_one({"_id": "fuzz-consultant"},
                                        {"$set": {"openid": "o-fuzz-consultant"}})
    await app.money.ledger.post("fuzz:earned", [("external:fuzz", -100_000),
                                                ("earnings:fuzz-consultant", 100_000)])
    payout_ids = [(await call("POST", "/api/v1/payouts", {"amount": amount}, consultant,
                              201))["payout"]["id"] for amount in (6000, 6000, 100, 100)]
    entries = (await call("GET", "/api/v1/admin/attention", token=admin))["entries"]
    # Media: a cover (a public image), an upload in progress, a signed URL of the cover.
    cover = (await call("POST", "/api/v1/media/uploads", {
        "kind": "image", "purpose": "cover", "size": len(FUZZ_PNG)}, consultant, 201))["upload"]
    status, done = await api.request(
        "PUT", f"/api/v1/media/uploads/{cover['id']}", raw=FUZZ_PNG, token=consultant,
        headers={"Content-Range": f"bytes 0-{len(FUZZ_PNG) - 1}/{len(FUZZ_PNG)}"})
    assert status == 200, done
    cover_id = done["media"]["id"]
    upload = (await call("POST", "/api/v1/media/uploads", {
        "kind": "audio", "purpose": "lesson", "size": 1000}, consultant, 201))["upload"]
    signed = app.media.signed_url(cover_id, user_id="fuzz-consultant",
                                  resource=f"course:{course['id']}", ttl=24 * 3600)
    # A question answered by voice (live_qa): its signed audio URL for members.
    voiced = (await call("POST", f"/api/v1/rooms/{live['id']}/questions",
                         {"text": "fuzz voice question"}, asker, 201))["question"]
    recording = (await call("POST", "/api/v1/media/uploads", {
        "kind": "audio", "purpose": "answer", "size": len(FUZZ_WAV)}, consultant,
        201))["upload"]
    status, recorded = await api.request(
        "PUT", f"/api/v1/media/uploads/{recording['id']}", raw=FUZZ_WAV, token=consultant,
        headers={"Content-Range": f"bytes 0-{len(FUZZ_WAV) - 1}/{len(FUZZ_WAV)}"})
    assert status == 200, recorded
    await call("POST", f"/api/v1/rooms/{live['id']}/questions/{voiced['id']}/answer",
               {"audio_media_id": recorded["media"]["id"]}, consultant)
    # Audience (docs/audience.md): the asker paid for the consultant's ticket, so is
    # theirs to tag; a segment to read and send to, one to delete, a message sent.
    await call("PUT", "/api/v1/tags/fuzz-asker/VIP", token=consultant)
    segment, doomed = [(await call("POST", "/api/v1/segments", {
        "name": name, "conditions": [{"tag": "VIP"}]}, consultant, 201))["id"]
        for name in ("fuzz", "doomed")]
    message = await call("POST", f"/api/v1/segments/{segment}/messages", {"title": "fuzz"},
                         consultant, 202)
    base = f"http://127.0.0.1:{app.port}"
    return Seeded(
        path={
            "room_id": [live["id"], scheduled["room"]["id"]],
            "question_id": [other["id"], question["id"]],
            "seq": [str(said.seq), "1"],
            "course_id": [course["id"]],
            "lesson_id": [lesson["id"] for lesson in course["lessons"]],
            "consultation_id": [consultation["id"], declined["id"]],
            "consultant_id": ["fuzz-consultant"],
            "order_id": [pending["order"]["id"], ticket["order"]["id"]],
            "entry_id": [entry["id"] for entry in entries],
            "payout_id": payout_ids,
            "upload_id": [upload["id"]],
            "media_id": [cover_id],
            "variant": ["card", "thumb"],
            # Members and enrollments: the seeded student. The admin routes get a user
            # of their own (blocking the fuzzer's own users would end the run's tokens).
            "user_id": ["fuzz-student"],
            "resource": [f"room:{live['id']}", "user:fuzz-consultant"],
            "path": ["index.html", "js/kpay.js", "css/kpay.css", "../README.md"],
            "tag": ["VIP"],
            "segment_id": [segment],
            "message_id": [message["id"]],
        },
        query={
            "url": [f"{base}/static/index.html", f"{base}/static/room.html?id=1"],
            "redirect": ["/static/index.html", "/static/course.html?id=1"],
            # The people lookup (GET /api/v1/users/profiles).
            "ids": ["fuzz-student,fuzz-consultant"],
            "host_id": ["me", "fuzz-consultant"],
            "status": ["open", "answered", "resolved", "all"],
            "role": ["student", "consultant"],
            "mine": ["0", "1"],
            "limit": ["1", "50"],
            "since": ["0"],
            "skip": ["0"],
            "scope": ["snsapi_base", "snsapi_userinfo"],
            "before": ["2026-03-01T00:00:00+08:00"],
            "month": ["2026-03"],
            "token": [signed.rsplit("token=", 1)[1]],
        },
        only={
            ("/api/v1/rooms/{room_id}/start", "room_id"): scheduled["room"]["id"],
            # Follow a consultant (the only ones who can be followed).
            ("/api/v1/users/{user_id}/follow", "user_id"): "fuzz-consultant",
            ("/api/v1/consultations/{consultation_id}/decline", "consultation_id"):
                declined["id"],
            # The host answers the student's question; the student upvotes the other.
            ("/api/v1/rooms/{room_id}/questions/{question_id}/answer", "question_id"):
                question["id"],
            # Removed from the room: the other ticket holder (the student gets muted).
            ("/api/v1/rooms/{room_id}/members/{user_id}", "user_id"): "fuzz-asker",
            ("/api/v1/rooms/{room_id}/questions/{question_id}/audio", "question_id"):
                voiced["id"],
            ("/api/v1/rooms/{room_id}/questions/{question_id}/audio", "room_id"): live["id"],
            # Operators' refunds: a paid wallet order, and the order paid after close.
            ("/api/v1/admin/orders/{order_id}/refund", "order_id"): bought["order"]["id"],
            ("/api/v1/admin/attention/{entry_id}/refund", "entry_id"): late_entry["_id"],
            ("/api/v1/admin/payouts/{payout_id}/approve", "payout_id"): payout_ids[0],
            ("/api/v1/admin/payouts/{payout_id}/reject", "payout_id"): payout_ids[1],
            ("/api/v1/payouts/{payout_id}/cancel", "payout_id"): payout_ids[2],
            ("/api/v1/dev/payouts/{payout_id}/confirm", "payout_id"): payout_ids[3],
            # Only an unpublished lesson can be deleted (keyed by method too: the
            # lesson's GET and PATCH keep the first lesson).
            ("DELETE", "/api/v1/courses/{course_id}/lessons/{lesson_id}", "lesson_id"):
                course["lessons"][3]["id"],
            ("DELETE", "/api/v1/segments/{segment_id}", "segment_id"): doomed,
            ("/api/v1/tags/{user_id}/{tag}", "user_id"): "fuzz-asker",
        },
        bodies={
            ("POST", "/api/v1/orders"): {
                "item": {"kind": "live_ticket", "room_id": scheduled["room"]["id"]},
                "channel": "wallet"},
            ("POST", "/api/v1/consultations"): {"consultant_id": "fuzz-consultant"},
            ("POST", "/api/v1/payouts"): {"amount": 100},
            # A template the wechat_notify section below sends in subscribe mode.
            ("POST", "/api/v1/wechat-notify/consents"): {"template_id": "FUZZ_SUB",
                                                         "accepted": True},
            # Edits that leave the objects usable for the routes after them.
            ("PUT", "/api/v1/consultants/me"): {"rate_per_minute": 100, "max_minutes": 30},
            ("PATCH", "/api/v1/rooms/{room_id}"): {"title": "fuzz live, renamed"},
            ("PATCH", "/api/v1/courses/{course_id}"): {"title": "fuzz course, renamed"},
            ("PATCH", "/api/v1/courses/{course_id}/lessons/{lesson_id}"): {
                "title": "now, renamed"},
            ("POST", "/api/v1/pay/wechat/notify"): notify,
            ("POST", "/api/v1/rooms/{room_id}/questions/{question_id}/answer"): {
                "text": "fuzz answer"},
            ("POST", "/api/v1/admin/orders/{order_id}/refund"): {
                "amount": 1, "reason": "fuzz", "to": "wallet", "purpose": "adjust"},
            ("POST", "/api/v1/courses/{course_id}/lessons"): {
                "title": "fuzz lesson", "body": "more", "release": {"after_days": 1}},
            ("PUT", "/api/v1/courses/{course_id}/lesson-order"): {
                "lesson_ids": [lesson["id"] for lesson in course["lessons"]]},
            ("PUT", "/api/v1/courses/{course_id}/lessons/{lesson_id}/progress"): {
                "position_seconds": 12.5, "duration_seconds": 60},
            # The typed confirmation of an anonymisation: the admin routes' own user.
            ("POST", "/api/v1/admin/users/{user_id}/anonymise"): {"confirm": "fuzz-victim"},
            ("POST", "/api/v1/segments"): {"name": "fuzz", "conditions": [{"tag": "VIP"}]},
            ("PATCH", "/api/v1/segments/{segment_id}"): {"name": "fuzz, renamed"},
            ("POST", "/api/v1/segments/{segment_id}/messages"): {"title": "fuzz"},
            ("POST", "/api/v1/tags/{tag}"): {"user_ids": ["fuzz-asker"]},
        })


def either(known: list[Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, or one of ``known``."""
    return {"anyOf": [{"enum": known}, schema]}


def offer(document: dict[str, Any], seeded: Seeded, kinds: list[str]) -> dict[str, Any]:
    """A copy of ``document`` that also offers the seeded ids: for string parameters,
    for the id fields of request bodies, and for order items (one of the registered
    kinds with its fields, beside any object)."""
    document = copy.deepcopy(document)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if (method.upper(), path) in seeded.bodies:
                operation["x-kpay-seeded-body"] = seeded.bodies[(method.upper(), path)]
            for parameter in operation.get("parameters", []):
                known = (seeded.path if parameter["in"] == "path" else seeded.query).get(
                    parameter["name"], [])
                if path.startswith("/api/v1/admin/users/") and parameter["name"] == "user_id":
                    known = ["fuzz-victim"]
                if known and parameter["schema"] == {"type": "string"}:
                    parameter["schema"] = either(known, {"type": "string"})
                    parameter["x-kpay-seeded"] = seeded.only.get(
                        (method.upper(), path, parameter["name"]),
                        seeded.only.get((path, parameter["name"]), known[0]))
    schemas = document["components"]["schemas"]
    bodies = {content["schema"]["$ref"].rsplit("/", 1)[1]
              for item in document["paths"].values() for operation in item.values()
              for content in operation.get("requestBody", {}).get("content", {}).values()}
    for name in bodies - {"DevLogin"}:  # a dev login as a seeded user changes its role
        properties = schemas[name].get("properties", {})
        for field_name in ("room_id", "course_id", "consultant_id", "user_id"):
            if properties.get(field_name, {}).get("type") == "string":
                properties[field_name] = either(seeded.path[field_name],
                                                properties[field_name])
    order = schemas["OrderRequest"]["properties"]
    order["channel"] = either(["wallet", "native", "jsapi", "mweb"], order["channel"])
    order["item"] = {"anyOf": [{
        "type": "object", "required": ["kind"],
        "properties": {
            "kind": {"enum": kinds},
            "amount": {"type": "integer"},
            "bounty": {"type": "integer"},
            "text": {"type": "string"},
            "room_id": either(seeded.path["room_id"], {"type": "string"}),
            "course_id": either(seeded.path["course_id"], {"type": "string"}),
        }}, order["item"]]}
    return document


# -- the fuzzer (synchronous: runs in a worker thread) ------------------------------------


def order_key(operation: Any) -> tuple[int, int, str, str]:
    """GETs, then the other methods, then what ends seeded objects (the end of the
    room last: every room route after it answers 409)."""
    last = [n for n, marker in enumerate(LAST) if marker in operation.path]
    return (2 if last else 0 if operation.method.upper() == "GET" else 1,
            last[0] if last else 0, operation.path, operation.method)


def fuzz(document: dict[str, Any], base_url: str, tokens: dict[str, str]) -> Report:
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: straight to 127.0.0.1
    report = Report()
    started = time.monotonic()

    def fresh_token(role: str) -> str:
        response = session.post(f"{base_url}/api/v1/dev/login", timeout=30, json={
            "user_id": f"fuzz-leaver-{role}", "role": role})
        response.raise_for_status()
        return response.json()["token"]

    def run(operation: Any, role: str, mode: GenerationMode, seeded: bool = False) -> None:
        label = f"{operation.method.upper()} {operation.path}"
        fixed: dict[str, dict[str, str]] = {"path": {}, "query": {}}
        raw = document["paths"][operation.path][operation.method.lower()]
        if seeded:
            for parameter in raw.get("parameters", []):
                if "x-kpay-seeded" in parameter:
                    fixed[parameter["in"]][parameter["name"]] = parameter["x-kpay-seeded"]
        body = raw.get("x-kpay-seeded-body", NOT_SET) if seeded else NOT_SET
        strategy = operation.as_strategy(generation_mode=mode,
                                         path_parameters=fixed["path"] or None,
                                         query=fixed["query"] or None, body=body)

        @seed(SEED + ROLES_AND_NOBODY.index(role))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def examples(case: Any) -> None:
            headers = {}
            if role != "nobody":
                token = (fresh_token(role) if (operation.method.upper(), operation.path)
                         in ENDS_TOKENS else tokens[role])
                headers["Authorization"] = f"Bearer {token}"
            response = case.call(base_url=base_url, session=session, headers=headers,
                                 allow_redirects=False, timeout=30)
            report.requests += 1
            report.statuses[response.status_code] += 1
            if response.status_code < 400:
                report.succeeded.add(label)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except (Failure, FailureGroup) as error:
                for check, message in check_names(error):
                    report.add(Found(label, check, response.status_code, role, mode.value,
                                     message, case.as_curl_command(headers=headers)))

        try:
            examples()
        except Unsatisfiable:
            # Nothing to negate (no parameters, no body): positive mode covers it.
            report.unsatisfiable.append(f"{label} {mode.value}")

    operations = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if ((operation.method.upper(), operation.path) not in NOT_FUZZED
                and ONLY in f"{operation.method.upper()} {operation.path}"):
            operations.append(operation)
    operations.sort(key=order_key)
    # First pass: the seeded objects' ids in every parameter that has them, and the
    # seeded bodies: successes to check, not only refusals (before the generated data
    # of the second pass changes the objects).
    for operation in operations:
        raw = document["paths"][operation.path][operation.method.lower()]
        if "x-kpay-seeded-body" in raw or any(
                "x-kpay-seeded" in parameter for parameter in raw.get("parameters", [])):
            for role in ROLES:
                run(operation, role, GenerationMode.POSITIVE, seeded=True)
    # Second pass: generated data, positive and negative, as each role and as nobody.
    for operation in operations:
        report.operations += 1
        for role in ROLES_AND_NOBODY:
            run(operation, role, GenerationMode.POSITIVE)
            if role != "nobody":
                run(operation, role, GenerationMode.NEGATIVE)

    if "/api/v1/dev/clock" in document["paths"] and not ONLY:
        # The dev clock, once, bounded: a second forward.
        case = schema["/api/v1/dev/clock"]["POST"].Case(body={"advance": 1})
        headers = {"Authorization": f"Bearer {tokens['student']}"}
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        report.requests += 1
        report.statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)
        assert response.status_code == 200, response.text
    for reset, body in RESETS:
        if reset not in document["paths"] or ONLY:
            continue
        case = schema[reset]["POST"].Case(body=body)
        # A token issued now: the clock reset leaves the run's tokens far in the past.
        headers = {"Authorization": f"Bearer {fresh_token('student')}"}
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        report.requests += 1
        report.statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)
        assert response.status_code == 200, response.text
    report.seconds = time.monotonic() - started
    return report


@pytest.mark.gen_test(timeout=900)
async def test_fuzz_every_operation(api, kpay_app):
    tokens = {role: await api.login(f"fuzz-{role}", role) for role in ROLES}
    await api.login("fuzz-victim", "student")
    seeded = await seed_objects(api, kpay_app, tokens)
    status, document = await api.get("/api/v1/openapi.json")
    assert status == 200
    kinds = sorted(kpay_app.money.orders.kinds)
    report = await asyncio.to_thread(fuzz, offer(document, seeded, kinds),
                                     f"http://127.0.0.1:{kpay_app.port}", tokens)
    print("\n" + report.text())
    record_figures("fuzz", {
        "operations fuzzed": report.operations, "requests sent": report.requests,
        "operations answering a success (schema checked)": len(report.succeeded),
        "responses with status 500": report.statuses.get(500, 0),
        "failures (5xx, schema, status or content type)": len(report.failures),
        "examples per operation, role and mode": EXAMPLES, "seed": SEED,
        "seconds": round(report.seconds, 1)})
    fuzzed = {f"{method.upper()} {path}" for path, item in document["paths"].items()
              for method in item} - {f"{method} {path}" for method, path in NOT_FUZZED}
    fuzzed = {label for label in fuzzed if ONLY in label}
    assert report.operations == len(fuzzed)
    assert not report.failures, report.text()
    # Successes were checked too, not only refusals: every operation but those that
    # need WeChat's signature (the notifies) or a browser's login cookie answered one.
    missing = fuzzed - report.succeeded
    assert missing <= NEED_WECHAT | NEED_HEADERS, sorted(missing)


# -- the fuzzer is not blind ----------------------------------------------------------------


class Counted(BaseModel):
    count: int


class WrongBodyHandler(BaseHandler):
    @api("Says it answers a count, answers text", auth=False, response=Counted)
    def get(self) -> None:
        self.write_json({"count": "many"})


class CrashingHandler(BaseHandler):
    @api("Reads n without checking it: most strings are a 500", auth=False, query=("n",),
         response=Counted)
    def get(self) -> None:
        self.write_json({"count": int(self.get_query_argument("n", "0"))})


class BrokenRoutes:
    @hookimpl
    def register_routes(self, app):
        return [Route("/api/v1/fuzzcheck/wrong", WrongBodyHandler),
                Route("/api/v1/fuzzcheck/crash", CrashingHandler)]


class TestTheFuzzerFindsWhatItLooksFor:
    """The same fuzzer on two broken routes: it reports the 500 and the body that does
    not match its schema (so a clean run above means something)."""

    @pytest.fixture
    def kpay_overrides(self):
        return {"plugins": {"enabled": []}}

    @pytest.fixture
    def kpay_extra_plugins(self):
        return [("fuzzcheck", BrokenRoutes())]

    @pytest.mark.gen_test(timeout=300)
    async def test_server_errors_and_schema_violations_are_reported(self, api, kpay_app):
        tokens = {role: await api.login(f"fuzz-{role}", role) for role in ROLES}
        _, document = await api.get("/api/v1/openapi.json")
        document["paths"] = {path: item for path, item in document["paths"].items()
                             if path.startswith("/api/v1/fuzzcheck/")}
        report = await asyncio.to_thread(fuzz, document, f"http://127.0.0.1:{kpay_app.port}",
                                         tokens)
        assert report.operations == 2
        found = {(operation, check) for operation, check, _ in report.failures}
        assert ("GET /api/v1/fuzzcheck/crash", "not_a_server_error") in found, report.text()
        assert ("GET /api/v1/fuzzcheck/wrong", "response_schema_conformance") in found, \
            report.text()
        assert "GET /api/v1/fuzzcheck/crash" not in {
            operation for operation, check, _ in report.failures
            if check == "response_schema_conformance"}, report.text()
