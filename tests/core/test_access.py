"""app.access: one plugin owns a resource prefix, another asks through the core.

A throwaway ``vault`` plugin owns ``vault:<id>`` (its own collection, its own rule);
a throwaway ``reader`` plugin serves a route that asks ``app.access`` and never reads
``vaults``. Fail closed: unknown prefixes, undeclared actions, malformed names, unknown
or blocked users are refused, a rule's error reaches the caller, only ``True`` is a yes.
"""

from __future__ import annotations

from typing import Any

import pytest

from kpay import hookimpl
from kpay.core.access import Access, ResourceRule
from kpay.core.errors import PluginError
from kpay.core.web import BaseHandler, Route, api

VAULTS = "test_vaults"


async def vault_owner(app: Any, ident: str) -> str | None:
    if ident == "explodes":
        raise RuntimeError("vault rule bug")
    doc = await app.store[VAULTS].find_one({"_id": ident})
    return doc["owner"] if doc else None


async def vault_allows(app: Any, user: Any, action: str, ident: str) -> Any:
    if ident == "explodes":
        raise RuntimeError("vault rule bug")
    if ident == "truthy":
        return "yes"  # not True: must not count as a yes
    doc = await app.store[VAULTS].find_one({"_id": ident})
    if doc is None:
        return False
    if action == "open":
        return user.id == doc["owner"] or user.id in doc["guests"] or user.role == "admin"
    return user.id == doc["owner"]  # "seal"


class VaultPlugin:
    """Owns the prefix ``vault``; records every call of its rule."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str]] = []

    @hookimpl
    def register_resources(self, app):
        async def allows(app, user, action, ident):
            self.asked.append((user.id, action, ident))
            return await vault_allows(app, user, action, ident)

        return [ResourceRule("vault", vault_owner, allows, actions=("open", "seal"))]


class MayOpenHandler(BaseHandler):
    @api("Test plugin: may the caller open a vault (asked through app.access)")
    async def get(self, vault_id: str) -> None:
        user = self.require_user()
        resource = f"vault:{vault_id}"
        self.write_json({"allowed": await self.kpay.access.allowed(user.id, "open", resource),
                         "owner": await self.kpay.access.owner(resource)})


class ReaderPlugin:
    @hookimpl
    def register_routes(self, app):
        return [Route("/api/v1/test-reader/{vault_id}", MayOpenHandler)]


@pytest.fixture
def vault() -> VaultPlugin:
    return VaultPlugin()


@pytest.fixture
def kpay_overrides() -> dict[str, Any]:
    return {"plugins": {"enabled": []}}


@pytest.fixture
def kpay_extra_plugins(vault: VaultPlugin) -> list[tuple[str, Any]]:
    return [("vault", vault), ("reader", ReaderPlugin())]


@pytest.fixture
def vaults(io_loop: Any, kpay_app: Any) -> None:
    io_loop.run_sync(lambda: kpay_app.store[VAULTS].insert_one(
        {"_id": "v1", "owner": "carol", "guests": ["alice"]}))


@pytest.mark.gen_test
async def test_another_plugin_asks_through_app_access(api, vaults):
    for user, role, allowed in [("alice", "student", True), ("carol", "consultant", True),
                                ("bob", "student", False), ("root", "admin", True)]:
        client = await api.as_user(user, role)
        assert await client.get("/api/v1/test-reader/v1") == (
            200, {"allowed": allowed, "owner": "carol"}), user
    bob = await api.as_user("bob", "student")
    assert await bob.get("/api/v1/test-reader/v2") == (200, {"allowed": False, "owner": None})


@pytest.mark.gen_test
async def test_the_rule_gets_the_action_and_the_stored_role(api, kpay_app, vault, vaults):
    await api.as_user("alice", "student")
    await api.as_user("carol", "consultant")
    access = kpay_app.access
    assert await access.allowed("carol", "seal", "vault:v1") is True
    assert await access.allowed("alice", "seal", "vault:v1") is False
    assert vault.asked == [("carol", "seal", "v1"), ("alice", "seal", "v1")]


@pytest.mark.gen_test
async def test_it_fails_closed(api, kpay_app, vault, vaults):
    await api.as_user("alice", "student")
    access = kpay_app.access
    refused = [("open", "nothing:v1"), ("open", "vault"), ("open", "vault:"),
               ("open", ":v1"), ("delete", "vault:v1"), ("", "vault:v1"),
               ("open", "vault:truthy")]
    for action, resource in refused:
        assert await access.allowed("alice", action, resource) is False, (action, resource)
    # Undeclared actions and unknown prefixes never reach a rule.
    assert vault.asked == [("alice", "open", "truthy")]
    assert await access.owner("nothing:v1") is None
    assert await access.owner("vault") is None
    # A user the core does not know, or a blocked one, may do nothing.
    assert await access.allowed("stranger", "open", "vault:v1") is False
    await kpay_app.users.set_blocked("alice", True)
    assert await access.allowed("alice", "open", "vault:v1") is False


@pytest.mark.gen_test
async def test_a_rule_that_raises_reaches_the_caller(api, kpay_app, vaults):
    await api.as_user("alice", "student")
    with pytest.raises(RuntimeError, match="vault rule bug"):
        await kpay_app.access.allowed("alice", "open", "vault:explodes")
    with pytest.raises(RuntimeError, match="vault rule bug"):
        await kpay_app.access.owner("vault:explodes")


@pytest.mark.gen_test
async def test_the_prefix_is_listed_with_the_plugin(api):
    root = await api.as_user("root", "admin")
    status, body = await root.get("/api/v1/plugins")
    assert status == 200
    assert {p["name"]: p.get("resources") for p in body["plugins"]}["vault"] == ["vault"]


def test_two_rules_for_one_prefix_stop_start_up():
    rule = ResourceRule("vault", vault_owner, vault_allows, actions=("open",))
    with pytest.raises(PluginError, match="'vault' is claimed twice"):
        Access(None, [rule, rule])
    with pytest.raises(PluginError, match="plain word"):
        Access(None, [ResourceRule("va ult", vault_owner, vault_allows, actions=("open",))])


class TestTwoOwners:
    @pytest.fixture
    def kpay_extra_plugins(self, vault):
        return [("vault", vault), ("vault_again", VaultPlugin())]

    @pytest.mark.gen_test
    async def test_the_server_does_not_start(self, kpay_settings):
        app = kpay_settings.new_app()
        try:
            with pytest.raises(PluginError, match="'vault' is claimed twice"):
                await app.register_plugins()
        finally:
            await app.store.close()
