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
objects (a live room with a question and a chat message, a course, a consultation,
orders, an attention entry) and offers their ids for the path parameters beside
generated strings. ``POST /api/v1/dev/clock`` is not fuzzed: it moves time for the
whole app; it is called once with a one-second advance. Nothing leaves 127.0.0.1:
redirects are not followed, and WeChat is the local fake.

The app runs on the test's IO loop; schemathesis's calls are synchronous, so the
fuzzing runs in a worker thread (``asyncio.to_thread``) while the loop serves it.

Deterministic: a fixed hypothesis seed. ``KPAY_FUZZ_EXAMPLES`` (default 4) is the
number of examples per operation, role and mode; ``KPAY_FUZZ_SEED`` another seed.
A run prints its figures (``-s`` shows them):

    KPAY_FUZZ_EXAMPLES=50 .venv/bin/python -m pytest -q -p no:cacheprovider -s \\
        tests/core/test_schemathesis.py
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
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from plugins.live_qa import history

EXAMPLES = int(os.environ.get("KPAY_FUZZ_EXAMPLES", "4"))
SEED = int(os.environ.get("KPAY_FUZZ_SEED", "20260302"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]
ROLES = ("student", "consultant", "admin")
#: Moves the clock of the whole app (billing, drip release, expiry): called once, bounded.
NOT_FUZZED = {("POST", "/api/v1/dev/clock")}
#: End the caller's tokens: each call gets a token of its own, from a user of its own.
ENDS_TOKENS = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/logout-everywhere")}
#: Change or end the seeded objects: fuzzed after everything else.
LAST = ("/end", "/members/", "/unpublish", "/decline", "/block", "/role", "/logout")


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
    by_role: Counter[tuple[str, str, int]] = field(default_factory=Counter)
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
        name = "not_a_server_error" if getattr(failure, "code", "").startswith("SE") else \
            next((c for c in checks if c in {f.__name__ for f in CHECKS}), checks[0])
        title = getattr(failure, "title", "") or type(failure).__name__
        out.append((name, f"{title}: {getattr(failure, 'message', failure)}"))
    return out


# -- what the fuzzer may pick besides generated strings -----------------------------------


@dataclass
class Seeded:
    """Ids of real objects, offered for path and query parameters."""

    path: dict[str, list[str]]
    query: dict[str, list[str]]


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
    said = await history.publish(app, live["id"], "message",
                                 {"text": "fuzz chat", "from": "fuzz-consultant"})
    course = (await call("POST", "/api/v1/courses", {
        "title": "fuzz course", "price": 100, "lessons": [
            {"title": "now", "body": "# open"},
            {"title": "later", "body": "in three days", "release": {"after_days": 3}},
            {"title": "next", "body": "after the first", "release": {"after_previous": True}},
        ]}, consultant, 201))["course"]
    await call("POST", f"/api/v1/courses/{course['id']}/publish", {}, consultant)
    await call("POST", f"/api/v1/courses/{course['id']}/enrollments",
               {"user_id": "fuzz-student"}, consultant, 201)
    consultation = (await call("POST", "/api/v1/consultations",
                               {"consultant_id": "fuzz-consultant"}, student, 201))
    pending = await call("POST", "/api/v1/orders", {
        "item": {"kind": "wallet_topup", "amount": 1000}, "channel": "native"}, student, 201)
    await app.attention.report("fuzz", "order:o-fuzz", "seeded for the fuzzer")
    entries = (await call("GET", "/api/v1/admin/attention", token=admin))["entries"]
    base = f"http://127.0.0.1:{app.port}"
    return Seeded(
        path={
            "room_id": [live["id"], scheduled["room"]["id"]],
            "question_id": [question["id"]],
            "seq": [str(said.seq), "1"],
            "course_id": [course["id"]],
            "lesson_id": [lesson["id"] for lesson in course["lessons"]],
            "consultation_id": [consultation["consultation"]["id"]],
            "consultant_id": ["fuzz-consultant"],
            "order_id": [pending["order"]["id"], ticket["order"]["id"]],
            "entry_id": [entry["id"] for entry in entries],
            # Members and enrollments: the seeded student. The admin routes get a user
            # of their own (blocking the fuzzer's own users would end the run's tokens).
            "user_id": ["fuzz-student"],
            "path": ["index.html", "js/kpay.js", "css/kpay.css", "../README.md"],
        },
        query={
            "url": [f"{base}/static/index.html", f"{base}/static/room.html?id=1"],
            "redirect": ["/static/index.html", "/static/course.html?id=1"],
            "host_id": ["me", "fuzz-consultant"],
            "status": ["open", "answered", "resolved", "all"],
            "role": ["student", "consultant"],
            "mine": ["0", "1"],
            "limit": ["1", "50"],
            "since": ["0"],
            "skip": ["0"],
            "scope": ["snsapi_base", "snsapi_userinfo"],
            "before": ["2026-03-01T00:00:00+08:00"],
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
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                known = (seeded.path if parameter["in"] == "path" else seeded.query).get(
                    parameter["name"], [])
                if path.startswith("/api/v1/admin/users/") and parameter["name"] == "user_id":
                    known = ["fuzz-victim"]
                if known and parameter["schema"] == {"type": "string"}:
                    parameter["schema"] = either(known, {"type": "string"})
                    # The explicit phase sends the first one.
                    parameter["example"] = known[0]
    schemas = document["components"]["schemas"]
    bodies = {operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
              .rsplit("/", 1)[1] for item in document["paths"].values()
              for operation in item.values() if "requestBody" in operation}
    for name in bodies:
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


def order_key(operation: Any) -> tuple[int, str, str]:
    last = any(marker in operation.path for marker in LAST)
    return (2 if last else 0 if operation.method.upper() == "GET" else 1,
            operation.path, operation.method)


def fuzz(document: dict[str, Any], base_url: str, tokens: dict[str, str]) -> Report:
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    report = Report()
    started = time.monotonic()

    def fresh_token(role: str) -> str:
        response = session.post(f"{base_url}/api/v1/dev/login", timeout=30, json={
            "user_id": f"fuzz-leaver-{role}", "role": role})
        response.raise_for_status()
        return response.json()["token"]

    def run(operation: Any, role: str, mode: GenerationMode) -> None:
        label = f"{operation.method.upper()} {operation.path}"

        @seed(SEED)
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
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
            report.by_role[(role, mode.value, response.status_code)] += 1
            if response.status_code < 400:
                report.succeeded.add(label)
            if os.environ.get("FUZZ_DEBUG") and os.environ["FUZZ_DEBUG"] in label:
                print("DEBUG", role, mode.value, response.request.url, response.status_code, response.text[:300])
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
        if (operation.method.upper(), operation.path) not in NOT_FUZZED:
            operations.append(operation)
    for operation in sorted(operations, key=order_key):
        report.operations += 1
        for role in (*ROLES, "nobody"):
            run(operation, role, GenerationMode.POSITIVE)
            if role != "nobody":
                run(operation, role, GenerationMode.NEGATIVE)

    # The dev clock, once, bounded: a second forward.
    clock = schema["/api/v1/dev/clock"]["POST"]
    case = clock.Case(body={"advance": 1})
    headers = {"Authorization": f"Bearer {tokens['student']}"}
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
    print(sorted(report.by_role.items()))
    print("NO SUCCESS:", sorted({f"{m.upper()} {p}" for p, i in document["paths"].items() for m in i} - report.succeeded - {"POST /api/v1/dev/clock"}))
    operations = sum(len(item) for item in document["paths"].values())
    assert report.operations == operations - len(NOT_FUZZED)
    assert not report.failures, report.text()
