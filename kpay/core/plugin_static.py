"""Plugins ship their own H5 pages and static files, as datasette plugins do.

A plugin package with a ``static/`` folder beside its ``__init__.py`` has it served at
``/static/plugins/<plugin name>/`` (docs/plugins.md, "Pages and static files"), through
the same handler as the core's pages: the error envelope for a missing file, the same
security headers. So a feature's page (``static/index.html``) can live with its plugin.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

#: Where a plugin's ``static/`` folder is served.
URL_PREFIX = "/static/plugins/"


def static_folders(pm: pluggy.PluginManager) -> dict[str, Path]:
    """Each loaded plugin package's ``static/`` folder, by plugin name."""
    found: dict[str, Path] = {}
    for name, plugin in pm.list_name_plugin():
        if not isinstance(plugin, ModuleType) or not getattr(plugin, "__file__", None):
            continue
        init = Path(plugin.__file__)
        if init.name != "__init__.py":
            continue  # a single-module plugin has no folder of its own
        folder = init.parent / "static"
        if folder.is_dir():
            found[name] = folder
    return found


def static_rules(pm: pluggy.PluginManager, handler: type) -> list[tuple[str, type, dict[str, Any]]]:
    """Tornado rules serving every plugin's static folder with ``handler``."""
    return [(rf"{URL_PREFIX}{name}/(.*)", handler,
             {"path": str(folder), "default_filename": "index.html"})
            for name, folder in sorted(static_folders(pm).items())]
