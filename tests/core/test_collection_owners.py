"""Checked, not promised: plugins own their collections (``register_collections``).

In tests ``app.store[name]`` refuses a plugin's code a collection the plugin did not
declare; the core (kpay.*) and the tests themselves are not restricted. Two owners of
one collection, a plugin claiming a core collection, or an index on a collection the
plugin did not declare stop start-up.
"""

from __future__ import annotations

import logging
import sys
import textwrap
import types
from collections.abc import Iterator

import pytest

from kpay import hookimpl
from kpay.core import plugins as plugins_module
from kpay.core.errors import PluginError
from kpay.core.plugins import PluginManager
from kpay.core.store import IndexSpec
from kpay.testing import TestDeployment

# A plugin is a module (or package): the store finds the calling plugin by the module of
# the code that asks, so the test plugins are real modules, made from this source.
NOTES_PLUGIN = '''
from kpay import hookimpl
from kpay.core.store import IndexSpec
from kpay.testing import TestDeployment


@hookimpl
def register_collections(app):
    return ["notes"]


@hookimpl
def register_indexes(app):
    return [IndexSpec.of("notes", "room_id")]


async def count(app, collection):
    return await app.store[collection].count_documents({})
'''

UNDECLARED_PLUGIN = '''
from kpay import hookimpl


@hookimpl
def register_jobs(app):
    return []


async def count(app, collection):
    return await app.store[collection].count_documents({})
'''


def plugin_module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(textwrap.dedent(source), f"<{name}>", "exec"), module.__dict__)
    return module


@pytest.fixture
def notes() -> Iterator[types.ModuleType]:
    module = plugin_module("kpay_test_notes", NOTES_PLUGIN)
    sys.modules[module.__name__] = module
    yield module
    sys.modules.pop(module.__name__, None)


@pytest.fixture
def undeclared() -> Iterator[types.ModuleType]:
    module = plugin_module("kpay_test_undeclared", UNDECLARED_PLUGIN)
    # A fresh name each run would defeat "logged once"; forget it instead.
    plugins_module._warned_undeclared.discard("undeclared")
    yield module
    plugins_module._warned_undeclared.discard("undeclared")


@pytest.fixture
def kpay_extra_plugins(notes, undeclared):
    return [("notes", notes), ("undeclared", undeclared)]


@pytest.mark.gen_test
async def test_a_plugin_uses_its_own_collections(kpay_app, notes):
    await kpay_app.store["notes"].insert_one({"room_id": "r1"})  # the test itself: free
    assert await notes.count(kpay_app, "notes") == 1
    assert "notes" in kpay_app.collections.declared["notes"]


@pytest.mark.gen_test
async def test_a_plugin_reading_another_plugins_collection_fails_in_tests(kpay_app, notes):
    with pytest.raises(PluginError) as caught:
        await notes.count(kpay_app, "live_rooms")
    message = str(caught.value)
    assert "plugin 'notes'" in message and "'live_rooms'" in message
    assert "plugin 'live_qa'" in message  # its owner
    with pytest.raises(PluginError, match=r"'users'.*the core"):
        await notes.count(kpay_app, "users")
    # The core reads what it owns, for any caller; and the test reads anything.
    assert await kpay_app.users.profile("nobody") is None
    assert await kpay_app.store["live_rooms"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_the_built_ins_declare_what_they_index(kpay_app):
    declared = kpay_app.collections.declared
    assert {"live_qa", "course_drip", "consult_billing", "wechat_pay"} <= set(declared)
    assert "live_rooms" in declared["live_qa"]
    assert "course_enrollments" in declared["course_drip"]
    assert "consultations" in declared["consult_billing"]
    assert "wechat_notifies" in declared["wechat_pay"]


@pytest.mark.gen_test
async def test_a_plugin_without_the_hook_warns_once_and_is_not_checked(
        kpay_settings, kpay_app, undeclared, caplog):
    # Warned when kpay_app started; a second app of the deployment does not warn again.
    assert "undeclared" not in kpay_app.collections.declared
    assert await undeclared.count(kpay_app, "live_rooms") == 0
    other = kpay_settings.new_app()
    with caplog.at_level(logging.WARNING, logger="kpay.plugins"):
        await other.register_plugins()
    await other.store.close()
    assert "register_collections" not in caplog.text


def test_the_missing_hook_is_a_deprecation_warning(undeclared):
    with pytest.warns(DeprecationWarning, match="plugin 'undeclared' does not implement "
                                                "register_collections"):
        plugins_module.warn_undeclared("undeclared")


# -- start-up refusals -------------------------------------------------------------------


class Owner:
    def __init__(self, *collections: str, indexes: tuple[str, ...] = ()) -> None:
        self.collections, self.indexes = list(collections), indexes

    @hookimpl
    def register_collections(self, app):
        return self.collections

    @hookimpl
    def register_indexes(self, app):
        return [IndexSpec.of(name, "x") for name in self.indexes]


def deployment_with(kpay_settings, *plugins: tuple[str, object]):
    """An app of the test's deployment with these plugins besides the built-ins."""
    settings, pm, var_dir = kpay_settings
    fresh = PluginManager()
    for name, plugin in pm.list_name_plugin():
        if name not in ("notes", "undeclared"):
            fresh.add(plugin, name)
    for name, plugin in plugins:
        fresh.add(plugin, name)
    return TestDeployment(settings, fresh, var_dir, kpay_settings.clock_offset).new_app()


@pytest.mark.gen_test
async def test_two_owners_of_one_collection_stop_start_up(kpay_settings):
    app = deployment_with(kpay_settings, ("one", Owner("shared")), ("two", Owner("shared")))
    try:
        with pytest.raises(PluginError, match=r"plugin '(one|two)' declares the collection "
                                              r"'shared'.*plugin '(one|two)' owns it"):
            await app.register_plugins()
    finally:
        await app.store.close()


@pytest.mark.gen_test
async def test_claiming_another_plugins_or_a_core_collection_stops_start_up(kpay_settings):
    for claimed, owner in (("live_rooms", "plugin 'live_qa'"), ("orders", "the core"),
                           ("accounts", "the core")):
        app = deployment_with(kpay_settings, ("greedy", Owner(claimed)))
        try:
            with pytest.raises(PluginError) as caught:
                await app.register_plugins()
        finally:
            await app.store.close()
        assert f"'{claimed}'" in str(caught.value) and owner in str(caught.value)


@pytest.mark.gen_test
async def test_an_index_on_a_collection_not_declared_stops_start_up(kpay_settings):
    app = deployment_with(kpay_settings, ("sloppy", Owner("mine", indexes=("live_tickets",))))
    try:
        with pytest.raises(PluginError, match="plugin 'sloppy' registers an index on the "
                                              "collection 'live_tickets'"):
            await app.start()
    finally:
        # Refused before the indexes, the broker or on_startup: only the client to close.
        await app.store.close()
