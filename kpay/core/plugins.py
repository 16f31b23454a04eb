"""Discover plugins (entry points), select them (config), register them (pluggy).

Built-in plugins are registered exactly like third-party ones: through the
``kpay.plugins`` entry point group. The core never imports a plugin by name.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import time
import warnings
from collections.abc import Collection, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel

from kpay.core import hookspecs
from kpay.core.errors import ConfigError, PluginError
from kpay.core.store import CollectionGuard

log = logging.getLogger("kpay.plugins")

ENTRY_POINT_GROUP = "kpay.plugins"
TRACE_ENV = "KPAY_TRACE_PLUGINS"


@dataclass(frozen=True)
class AvailablePlugin:
    name: str
    module: str
    version: str


def available_plugins() -> dict[str, AvailablePlugin]:
    """Every installed plugin, by entry point name."""
    found: dict[str, AvailablePlugin] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        version = ep.dist.version if ep.dist is not None else "0"
        found[ep.name] = AvailablePlugin(ep.name, ep.value, version)
    return found


def select(enabled: Iterable[str], available: dict[str, AvailablePlugin]) -> list[AvailablePlugin]:
    """The plugins named in config, in config order; ``"*"`` means every installed one."""
    names = list(enabled)
    if "*" in names:
        return [available[n] for n in sorted(available)]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise PluginError(
            f"unknown plugin {unknown[0]!r} in [plugins] enabled; available: "
            + (", ".join(sorted(available)) or "none installed")
        )
    return [available[n] for n in dict.fromkeys(names)]


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with kpay's hookspecs and version bookkeeping."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.versions: dict[str, str] = {}
        # What each plugin's register_* hooks returned, by plugin then hook (for describe).
        self.registered: dict[str, dict[str, list[Any]]] = {}
        # Read by kpay's hook calls (``trace``): one line per hook call.
        self.tracing = os.environ.get(TRACE_ENV) == "1"

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """pluggy's ``register``, refusing hook wrappers and making each implementation
        report to kpay's hook calls (``each_implementation``)."""
        registered = super().register(plugin, name)
        if registered is None:
            return None  # blocked by name
        for caller in self.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                if impl.hookwrapper or impl.wrapper:
                    self.unregister(plugin)
                    raise PluginError(
                        f"plugin {registered!r}: {caller.name} is a hook wrapper "
                        "(wrapper=True or hookwrapper=True), which kpay refuses: its hooks "
                        "may be async, so a wrapper would resume before the implementations "
                        "it wraps had run. Implement the hook itself instead.")
                reporting(impl)
        return registered

    def load(self, plugins: Iterable[AvailablePlugin]) -> None:
        for plugin in plugins:
            try:
                module = importlib.import_module(plugin.module)
            except Exception as e:
                raise PluginError(
                    f"plugin {plugin.name!r}: cannot import {plugin.module}: {e}") from e
            self.add(module, plugin.name, plugin.version)
        self.check()

    def add(self, plugin: ModuleType | object, name: str, version: str = "0") -> None:
        try:
            self.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as e:
            raise PluginError(f"plugin {name!r}: {e}") from e
        self.versions[name] = version

    def check(self) -> None:
        """Catch misspelt hook names at start instead of silently never calling them."""
        try:
            self.check_pending()
        except pluggy.PluginValidationError as e:
            raise PluginError(str(e)) from e

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(h.name for h in self.get_hookcallers(plugin) or [])
            described: dict[str, Any] = {"name": name, "version": self.versions.get(name, "0"),
                                         "hooks": hooks}
            registered = self.registered.get(name)
            if registered is not None:
                # Known once the register_* hooks ran (app start, or `kpay plugins`).
                for key, hook_name, label in REGISTRATION_LABELS:
                    described[key] = sorted(label(x) for x in registered.get(hook_name, []))
                providers = registered.get("register_payment_providers", [])
                if providers:
                    described["payment_capabilities"] = {
                        p.identifier: {**p.capabilities.describe(p.channels),
                                       "url_name": p.url_name} for p in providers}
            out.append(described)
        return sorted(out, key=lambda p: p["name"])


# describe() key, register_* hook, how one registered thing is named.
REGISTRATION_LABELS: list[tuple[str, str, Any]] = [
    ("routes", "register_routes", lambda route: route.path),
    ("channels", "register_channels", lambda rule: rule.prefix),
    ("order_kinds", "register_order_kinds", lambda kind: kind.name),
    ("payment_providers", "register_payment_providers", lambda provider: provider.identifier),
    ("resources", "register_resources", lambda rule: rule.prefix),
    ("price_adjusters", "register_price_adjusters", lambda adjuster: adjuster.name),
    ("collections", "register_collections", lambda name: name),
]


def settings_models(pm: PluginManager,
                    reserved: Iterable[str] = ()) -> dict[str, type[BaseModel]]:
    """The config sections declared through ``register_settings``, by section name.

    Called before the event loop runs, so an implementation must return a plain list;
    a section must not reuse a core section's name (``reserved``) or another plugin's.
    """
    owners: dict[str, str] = {name: "the core" for name in reserved}
    models: dict[str, type[BaseModel]] = {}
    started = time.perf_counter()
    calls = each_implementation(pm, "register_settings", {})
    for called in calls:
        if called.error is not None:
            close_awaitables(calls)
            raise PluginError(f"plugin {called.plugin!r} failed in register_settings: "
                              f"{type(called.error).__name__}: {called.error}") from called.error
        declared = called.value
        if inspect.isawaitable(declared) or not isinstance(declared, list | tuple | None):
            close_awaitables(calls)
            raise PluginError(f"plugin {called.plugin!r}: register_settings must return a "
                              "list of (section, pydantic model), not an awaitable")
        for section, model in declared or []:
            if section in owners:
                raise ConfigError(f"settings section [{section}] of plugin {called.plugin!r}"
                                  f" is already declared by {owners[section]}")
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise PluginError(f"plugin {called.plugin!r}: section [{section}] needs a "
                                  "pydantic model class")
            owners[section] = f"plugin {called.plugin!r}"
            models[section] = model
    trace(pm, "register_settings", calls, started)
    return models


async def await_me_maybe(value: Any) -> Any:
    """Hooks may return a value or an awaitable; this resolves both."""
    if inspect.isawaitable(value):
        return await value
    return value


# Set while kpay calls a hook through pluggy (``each_implementation``): each
# implementation then reports what it did instead of raising, so one plugin's failure
# neither stops pluggy's loop nor hides the others. A plain ``pm.hook.<name>(...)``
# call outside kpay's helpers behaves as pluggy always does.
_reporting: ContextVar[bool] = ContextVar("kpay_hook_reporting", default=False)
# The names of the plugins a kpay hook call leaves out (``each_implementation(without=)``).
# By name, in kpay's own wrapper: pluggy's ``subset_hook_caller`` puts plugin objects in
# a set, and one unhashable plugin (a dataclass) would stop the call for every plugin.
_left_out: ContextVar[frozenset[str]] = ContextVar("kpay_hook_left_out",
                                                   default=frozenset())


@dataclass
class ImplCall:
    """What one implementation did in a hook call made by kpay: the value it returned
    (maybe an awaitable) or the exception it raised, with its plugin's name."""

    plugin: str
    value: Any = None
    error: Exception | None = None

    async def result(self) -> Any:
        """The implementation's result, awaited; its exception raised."""
        if self.error is not None:
            raise self.error
        return await await_me_maybe(self.value)


def reporting(impl: pluggy.HookImpl) -> None:
    """Make ``impl`` report an :class:`ImplCall` when kpay calls its hook."""
    function, plugin = impl.function, impl.plugin_name

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        if not _reporting.get():
            return function(*args, **kwargs)
        if plugin in _left_out.get():
            return None  # pluggy keeps no None result: as if not called
        # Hooks called from inside this implementation are plain pluggy calls again.
        token = _reporting.set(False)
        try:
            return ImplCall(plugin, function(*args, **kwargs))
        except Exception as e:
            return ImplCall(plugin, error=e)
        finally:
            _reporting.reset(token)

    impl.function = call


def each_implementation(pm: PluginManager, hook_name: str, kwargs: dict[str, Any],
                        without: Collection[str] = ()) -> list[ImplCall]:
    """Call a hook through pluggy (``pm.hook.<name>``, in pluggy's order: last
    registered first, ``tryfirst``/``trylast`` honoured), leaving out the plugins named
    ``without``, and return what each implementation did, its awaitables not yet
    awaited. Not for ``firstresult`` hooks: every implementation reports, so pluggy
    would stop at the first one."""
    caller = getattr(pm.hook, hook_name)
    if caller.spec is not None and caller.spec.opts.get("firstresult"):
        raise TypeError(f"{hook_name} is a firstresult hook: call pm.hook.{hook_name}(...)")
    token = _reporting.set(True)
    left_out = _left_out.set(frozenset(without))
    try:
        return caller(**kwargs)
    finally:
        _left_out.reset(left_out)
        _reporting.reset(token)


def trace(pm: PluginManager, hook_name: str, calls: list[ImplCall],
          started: float) -> None:
    """One log line per hook call when tracing is on (``KPAY_TRACE_PLUGINS=1``): the
    hook, the plugins called and the time until their awaitables were resolved."""
    if getattr(pm, "tracing", False):
        log.info("hook %s [%s] %.2f ms", hook_name, ",".join(c.plugin for c in calls),
                 (time.perf_counter() - started) * 1000)


async def register_all(pm: PluginManager, hook_name: str, app: Any) -> list[Any]:
    """Call a ``register_*`` hook and join the lists the plugins return.

    An exception stops start-up as a ``PluginError`` naming the plugin and the hook.
    What each plugin returned is kept in ``pm.registered`` for ``describe()``.
    """
    started = time.perf_counter()
    calls = each_implementation(pm, hook_name, {"app": app})
    joined: list[Any] = []
    for called in calls:
        try:
            items = list(await called.result() or [])
        except (ConfigError, PluginError) as e:
            # Already a start-up message (a missing setting, say): keep its type, add the name.
            close_awaitables(calls)
            raise type(e)(f"plugin {called.plugin!r} failed in {hook_name}: {e}") from e
        except Exception as e:
            close_awaitables(calls)
            raise PluginError(f"plugin {called.plugin!r} failed in {hook_name}: "
                              f"{type(e).__name__}: {e}") from e
        registered = getattr(pm, "registered", None)
        if registered is not None:
            registered.setdefault(called.plugin, {})[hook_name] = items
        joined.extend(items)
    trace(pm, hook_name, calls, started)
    return joined


async def notify(pm: PluginManager, hook_name: str, *, reraise: bool = False,
                 without: Collection[str] = (), **kwargs: Any) -> None:
    """Call an ``on_*`` hook with each plugin isolated: one plugin's failure is logged
    with its name and the others still run (``reraise`` in dev mode: raised once every
    plugin was called). The plugins named ``without`` are not called."""
    started = time.perf_counter()
    calls = each_implementation(pm, hook_name, kwargs, without)
    failure: Exception | None = None
    for called in calls:
        try:
            await called.result()
        except Exception as e:
            log.error("plugin %r failed in %s", called.plugin, hook_name, exc_info=e)
            failure = failure or e
    trace(pm, hook_name, calls, started)
    if reraise and failure is not None:
        raise failure


def close_awaitables(calls: list[ImplCall]) -> None:
    """Close the coroutines of a hook call that stopped early (no 'never awaited')."""
    for called in calls:
        if inspect.iscoroutine(called.value):
            called.value.close()


# Plugins already warned about a missing register_collections, in this process.
_warned_undeclared: set[str] = set()


async def collection_owners(pm: PluginManager, app: Any, core: Iterable[str]) -> CollectionGuard:
    """Call ``register_collections``: who owns which collection.

    A collection declared twice, or a core collection claimed, stops start-up with a
    ``PluginError``. A plugin without the hook is not checked (a DeprecationWarning,
    logged once). The result is what ``Store.guard`` checks in tests.
    """
    await register_all(pm, "register_collections", app)
    implementing = {impl.plugin_name for impl in pm.hook.register_collections.get_hookimpls()}
    owners = {name: "the core" for name in core}
    declared: dict[str, frozenset[str]] = {}
    modules: dict[str, str] = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        if name not in implementing:
            warn_undeclared(name)
            continue
        names = pm.registered.get(name, {}).get("register_collections", [])
        for collection in names:
            if not isinstance(collection, str) or not collection:
                raise PluginError(f"plugin {name!r}: register_collections must return "
                                  f"collection names, not {collection!r}")
            if collection in owners:
                raise PluginError(f"plugin {name!r} declares the collection {collection!r} "
                                  f"in register_collections, but {owners[collection]} owns it")
            owners[collection] = f"plugin {name!r}"
        declared[name] = frozenset(names)
        if isinstance(plugin, ModuleType):
            # Its package and submodules are the plugin's code (Store.guard).
            modules[plugin.__name__] = name
    return CollectionGuard(declared, modules, owners)


def warn_undeclared(plugin: str) -> None:
    if plugin in _warned_undeclared:
        return
    _warned_undeclared.add(plugin)
    message = (f"plugin {plugin!r} does not implement register_collections: its use of "
               "collections is not checked; declare the collections it owns "
               "(docs/plugins.md, 'Upgrading plugins')")
    warnings.warn(message, DeprecationWarning, stacklevel=2)
    log.warning("%s", message)


def check_index_owners(pm: PluginManager, owners: CollectionGuard) -> None:
    """A plugin's indexes (``register_indexes``) must be on collections it declared."""
    for plugin, collections in owners.declared.items():
        for spec in pm.registered.get(plugin, {}).get("register_indexes", []):
            if spec.collection not in collections:
                raise PluginError(
                    f"plugin {plugin!r} registers an index on the collection "
                    f"{spec.collection!r}, which it did not declare in register_collections "
                    f"(owner: {owners.owners.get(spec.collection, 'no one')})")
