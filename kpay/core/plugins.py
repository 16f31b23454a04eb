"""Discover plugins (entry points), select them (config), register them (pluggy).

Built-in plugins are registered exactly like third-party ones: through the
``kpay.plugins`` entry point group. The core never imports a plugin by name.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel

from kpay.core import hookspecs
from kpay.core.errors import ConfigError, PluginError

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
        self.tracing = os.environ.get(TRACE_ENV) == "1"
        if self.tracing:
            enable_tracing(self)

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

    def plugin_name_of(self, function: Any) -> str:
        module = inspect.getmodule(function)
        for name, plugin in self.list_name_plugin():
            if plugin is module or plugin is getattr(function, "__self__", None):
                return name
        return getattr(module, "__name__", "?")


# describe() key, register_* hook, how one registered thing is named.
REGISTRATION_LABELS: list[tuple[str, str, Any]] = [
    ("routes", "register_routes", lambda route: route.path),
    ("channels", "register_channels", lambda rule: rule.prefix),
    ("order_kinds", "register_order_kinds", lambda kind: kind.name),
    ("payment_providers", "register_payment_providers", lambda provider: provider.identifier),
    ("resources", "register_resources", lambda rule: rule.prefix),
]


def settings_models(pm: pluggy.PluginManager,
                    reserved: Iterable[str] = ()) -> dict[str, type[BaseModel]]:
    """The config sections declared through ``register_settings``, by section name.

    Called before the event loop runs, so an implementation must return a plain list;
    a section must not reuse a core section's name (``reserved``) or another plugin's.
    """
    owners: dict[str, str] = {name: "the core" for name in reserved}
    models: dict[str, type[BaseModel]] = {}
    for impl in reversed(pm.hook.register_settings.get_hookimpls()):
        try:
            declared = impl.function()
        except Exception as e:
            raise PluginError(f"plugin {impl.plugin_name!r} failed in register_settings: "
                              f"{type(e).__name__}: {e}") from e
        if inspect.isawaitable(declared) or not isinstance(declared, list | tuple | None):
            if inspect.iscoroutine(declared):
                declared.close()
            raise PluginError(f"plugin {impl.plugin_name!r}: register_settings must return a "
                              "list of (section, pydantic model), not an awaitable")
        for section, model in declared or []:
            if section in owners:
                raise ConfigError(f"settings section [{section}] of plugin {impl.plugin_name!r}"
                                  f" is already declared by {owners[section]}")
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise PluginError(f"plugin {impl.plugin_name!r}: section [{section}] needs a "
                                  "pydantic model class")
            owners[section] = f"plugin {impl.plugin_name!r}"
            models[section] = model
    return models


def enable_tracing(pm: pluggy.PluginManager) -> None:
    """Log every hook call with its duration (``KPAY_TRACE_PLUGINS=1``)."""
    starts: dict[int, float] = {}

    def before(hook_name: str, impls: list, kwargs: dict) -> None:
        starts[id(kwargs)] = time.perf_counter()

    def after(outcome: Any, hook_name: str, impls: list, kwargs: dict) -> None:
        took = (time.perf_counter() - starts.pop(id(kwargs), time.perf_counter())) * 1000
        names = ",".join(i.plugin_name for i in impls)
        log.info("hook %s [%s] %.2f ms", hook_name, names, took)

    pm.add_hookcall_monitoring(before, after)


async def await_me_maybe(value: Any) -> Any:
    """Hooks may return a value or an awaitable; this resolves both."""
    if inspect.isawaitable(value):
        return await value
    return value


async def register_all(pm: PluginManager, hook_name: str, app: Any) -> list[Any]:
    """Call a ``register_*`` hook one plugin at a time and join the lists.

    An exception stops start-up as a ``PluginError`` naming the plugin and the hook.
    What each plugin returned is kept in ``pm.registered`` for ``describe()``.
    """
    hook = getattr(pm.hook, hook_name)
    tracing = getattr(pm, "tracing", False)
    joined: list[Any] = []
    for impl in reversed(hook.get_hookimpls()):
        started = time.perf_counter()
        try:
            result = await await_me_maybe(impl.function(**{n: app for n in impl.argnames}))
            items = list(result or [])
        except (ConfigError, PluginError) as e:
            # Already a start-up message (a missing setting, say): keep its type, add the name.
            raise type(e)(f"plugin {impl.plugin_name!r} failed in {hook_name}: {e}") from e
        except Exception as e:
            raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                              f"{type(e).__name__}: {e}") from e
        if tracing:
            log.info("hook %s [%s] %.2f ms", hook_name, impl.plugin_name,
                     (time.perf_counter() - started) * 1000)
        registered = getattr(pm, "registered", None)
        if registered is not None:
            registered.setdefault(impl.plugin_name, {})[hook_name] = items
        joined.extend(items)
    return joined


async def notify(pm: pluggy.PluginManager, hook_name: str, *, reraise: bool = False,
                 **kwargs: Any) -> None:
    """Call an ``on_*`` hook, one implementation at a time, so one plugin's failure is
    logged with its name and does not stop the others (``reraise`` in dev mode)."""
    hook = getattr(pm.hook, hook_name)
    tracing = getattr(pm, "tracing", False)
    for impl in reversed(hook.get_hookimpls()):
        args = {name: kwargs[name] for name in impl.argnames}
        started = time.perf_counter()
        try:
            await await_me_maybe(impl.function(**args))
            if tracing:
                # Called one implementation at a time, so pluggy's monitor does not see it.
                log.info("hook %s [%s] %.2f ms", hook_name, impl.plugin_name,
                         (time.perf_counter() - started) * 1000)
        except Exception:
            log.exception("plugin %r failed in %s", impl.plugin_name, hook_name)
            if reraise:
                raise
