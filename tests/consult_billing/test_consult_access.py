"""The resource ``consultation:<id>`` through ``app.access``: the consultant owns it;
its two parties may ``join`` (the same check as subscribing to ``consult:<id>``)."""

from __future__ import annotations

import pytest
from consult_helpers import make_pair, request


@pytest.mark.gen_test
async def test_consultation_owner_and_join(api, kpay_app):
    pair = await make_pair(api, rate=100)
    await request(api, pair)
    await api.login("eve", "student")
    await api.login("root", "admin")
    access, resource = kpay_app.access, f"consultation:{pair.consultation_id}"

    assert await access.owner(resource) == "con"
    for user, allowed in [("stu", True), ("con", True), ("eve", False), ("root", False)]:
        assert await access.allowed(user, "join", resource) is allowed, user


@pytest.mark.gen_test
async def test_unknown_consultations_and_actions_are_refused(api, kpay_app):
    pair = await make_pair(api, rate=100)
    await request(api, pair)
    access = kpay_app.access
    assert await access.owner("consultation:c-missing") is None
    assert await access.allowed("stu", "join", "consultation:c-missing") is False
    assert await access.allowed("stu", "end", f"consultation:{pair.consultation_id}") is False
