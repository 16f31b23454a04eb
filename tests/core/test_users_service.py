"""app.users as plugins use it: one profile, many profiles in one query."""

from __future__ import annotations

from typing import Any

import pytest

from kpay.core.metrics import commands_since, db_commands


@pytest.fixture
def kpay_overrides() -> dict[str, Any]:
    return {"plugins": {"enabled": []}}


@pytest.mark.gen_test
async def test_profile_and_profiles(api, kpay_app):
    await api.login("alice", "student", name="爱丽丝")
    await api.login("carol", "consultant")
    await kpay_app.users.set_blocked("carol", True)
    users = kpay_app.users
    alice = {"id": "alice", "name": "爱丽丝", "role": "student", "blocked": False,
             "avatar_url": None}
    carol = {"id": "carol", "name": "carol", "role": "consultant", "blocked": True,
             "avatar_url": None}
    assert await users.profile("alice") == alice
    assert await users.profile("nobody") is None

    before = db_commands()
    found = await users.profiles(["carol", "nobody", "alice", "carol"])
    assert found == {"alice": alice, "carol": carol}
    assert commands_since(before).get("find") == 1  # one query for them all
    assert await users.profiles([]) == {}


@pytest.mark.gen_test
async def test_profiles_refuses_more_than_a_page(kpay_app):
    with pytest.raises(ValueError, match="at most 1000"):
        await kpay_app.users.profiles(f"u{n}" for n in range(1001))
