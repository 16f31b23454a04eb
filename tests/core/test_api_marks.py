"""The ``@api`` marks are enforced, not only published: every operation of an app with
all built-in plugins (dev mode on) answers as its mark declares, before its method runs.

- declared ``auth=True`` (the default) or ``roles``: 401 without a token;
- declared ``roles``: 403 to a user holding none of them (admin holds every role);
- declared ``auth=False``: not a 401 without a token (the OpenAPI says it is open).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from kpay.core.openapi import implemented_methods
from kpay.core.web import BaseHandler, Operation, Route, api

# Operations not called here, each with its reason. The auth checks need none: the
# base handler refuses before the method runs, so nothing is written. Open operations
# are called without a token, which some cannot take safely.
NOT_CALLED_OPEN = {
    "POST /api/v1/pay/wechat/notify":
        "WeChat's notify: XML from WeChat, a junk body is recorded as a failed notify",
    "POST /api/v1/pay/wechat/refund-notify":
        "WeChat's refund notify: XML from WeChat, a junk body is recorded as failed",
}

# Users without the declared roles, tried in this order (admin has every role).
OUTSIDERS = ("student", "consultant")


def operations(app: Any) -> list[tuple[str, str, Operation]]:
    """``(METHOD, path, mark)`` of every marked operation of the app."""
    found = []
    for route in app.routes:
        for method in implemented_methods(route.handler):
            mark = getattr(getattr(route.handler, method), "__kpay_operation__", None)
            if mark is not None:
                found.append((method.upper(), route.path, mark))
    return found


def concrete(path: str) -> str:
    """A callable path: each ``{placeholder}`` filled with a harmless id."""
    return re.sub(r"\{\w+\}", "x1", path)


@pytest.mark.gen_test(timeout=120)
async def test_every_operation_enforces_its_declared_auth_and_roles(kpay_app, api):
    marked = operations(kpay_app)
    assert len(marked) > 60, "the app with every built-in plugin has fewer routes than expected"
    tokens = {role: await api.login(f"marks-{role}", role) for role in OUTSIDERS}
    wrong: list[str] = []
    checked = {"auth": 0, "roles": 0, "open": 0}
    for method, path, mark in marked:
        name = f"{method} {path}"
        body = None if method in ("GET", "DELETE") else {}
        if mark.auth or mark.roles:
            status, answer = await api.request(method, concrete(path), body)
            checked["auth"] += 1
            if status != 401:
                wrong.append(f"{name}: declared auth, answered {status} without a token")
        elif name not in NOT_CALLED_OPEN:
            status, answer = await api.request(method, concrete(path), body)
            checked["open"] += 1
            if status == 401:
                wrong.append(f"{name}: declared open (auth=False), answered 401")
        outsider = next((r for r in OUTSIDERS if r not in mark.roles), None)
        if mark.roles and outsider is not None:
            status, answer = await api.request(method, concrete(path), body,
                                               token=tokens[outsider])
            checked["roles"] += 1
            code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
            if (status, code) != (403, "forbidden"):
                wrong.append(f"{name}: declared roles {mark.roles}, answered a "
                             f"{outsider} {status} {code}")
    assert not wrong, "operations that do not do what their @api mark declares:\n" + \
        "\n".join(wrong)
    assert checked["auth"] > 50 and checked["roles"] > 15 and checked["open"] > 5, checked
    for name in NOT_CALLED_OPEN:
        method, path = name.split(" ", 1)
        assert any((m, p) == (method, path) for m, p, _ in marked), \
            f"{name} is listed as not called but is no longer a route"


@pytest.mark.gen_test
async def test_the_dev_clock_is_open_as_the_pages_need_and_moving_it_needs_a_user(api):
    # Pages ask it before anyone logs in, to learn whether dev mode is on.
    status, body = await api.get("/api/v1/dev/clock")
    assert status == 200 and "now" in body
    status, body = await api.request("POST", "/api/v1/dev/clock", {"advance": 60})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, document = await api.get("/api/v1/openapi.json")
    operation = document["paths"]["/api/v1/dev/clock"]
    assert not operation["get"].get("security") and operation["post"].get("security")


class ForgetfulHandler(BaseHandler):
    """Declares what it needs but never calls ``require_user``: the mark still holds."""

    @api("Test plugin: admins only, by the mark alone", roles=("admin",))
    async def get(self) -> None:
        self.write_json({"ran": True})

    @api("Test plugin: any user, by the mark alone")
    async def post(self) -> None:
        self.write_json({"ran": True, "user": self.current_user.id})


class MarksPlugin:
    from kpay import hookimpl

    @hookimpl
    def register_routes(self, app):
        return [Route("/api/v1/test-marks", ForgetfulHandler)]

    @hookimpl
    def register_collections(self, app):
        return []


@pytest.fixture
def kpay_extra_plugins():
    return [("marks", MarksPlugin())]


@pytest.mark.gen_test
async def test_a_handler_that_forgets_require_user_is_still_refused(api):
    assert (await api.get("/api/v1/test-marks"))[0] == 401
    student = await api.login("alice", "student")
    status, body = await api.get("/api/v1/test-marks", student)
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await api.get("/api/v1/test-marks", "not-a-token")
    assert status == 401 and body["error"]["code"] == "invalid_token"
    admin = await api.login("root", "admin")
    assert await api.get("/api/v1/test-marks", admin) == (200, {"ran": True})
    assert (await api.post("/api/v1/test-marks"))[0] == 401
    assert await api.post("/api/v1/test-marks", {}, student) == (
        200, {"ran": True, "user": "alice"})
