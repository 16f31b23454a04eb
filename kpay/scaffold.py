"""``kpay plugin new NAME``: the skeleton of a third-party plugin package.

The files are written from the templates below (plain strings, so nothing needs to
be shipped as package data). The result installs with ``pip install -e .``, is found
through its ``kpay.plugins`` entry point and has a passing test against a real server.
"""

from __future__ import annotations

import re
from pathlib import Path

from kpay.core.errors import PluginError

NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")

SETUP_CFG = """\
[metadata]
name = kpay-{dash}
version = 0.1.0
description = A kpay plugin: {name}

[options]
python_requires = >=3.11
packages = find:
install_requires =
    kpay

[options.packages.find]
include =
    {package}
    {package}.*

[options.entry_points]
# kpay finds its plugins through this group; "{name}" is the name to enable in config.
kpay.plugins =
    {name} = {package}
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64", "wheel"]
build-backend = "setuptools.build_meta"

[tool.pytest.ini_options]
testpaths = ["tests"]
filterwarnings = [
    "ignore::DeprecationWarning:wechatpy.*",
    "ignore::DeprecationWarning:pytest_tornado.*",
]
"""

MODULE = '''\
"""kpay plugin {name}: one settings section and one route. Add hooks from
kpay/core/hookspecs.py (docs/plugins.md) as the plugin grows."""

from pydantic import BaseModel

from kpay import hookimpl
from kpay.core.config import Section
from kpay.core.web import BaseHandler, Route, api


class {camel}Settings(Section):
    """[{name}] in the TOML file; KPAY_{upper}__GREETING overrides it."""

    greeting: str = "hello"


class Hello(BaseModel):
    """What GET /api/v1/{name}/hello answers (its schema in /api/v1/openapi.json)."""

    greeting: str
    user: str


class HelloHandler(BaseHandler):
    @api("{name}: greet the caller", response=Hello)
    def get(self) -> None:
        user = self.require_user()
        settings = self.kpay.settings.{name}
        self.write_json({{"greeting": settings.greeting, "user": user.id}})


@hookimpl
def register_settings():
    return [("{name}", {camel}Settings)]


@hookimpl
def register_routes(app):
    return [Route("/api/v1/{name}/hello", HelloHandler, tags=("{name}",))]
'''

TEST = '''\
"""Runs against a real kpay server and database (fixtures from kpay.testing)."""

import pytest


@pytest.fixture
def kpay_overrides():
    # Load only this plugin, through its entry point, as a deployment would.
    return {{"plugins": {{"enabled": ["{name}"]}}, "{name}": {{"greeting": "ni hao"}}}}


@pytest.mark.gen_test
async def test_hello_greets_the_caller(student):
    status, body = await student.get("/api/v1/{name}/hello")
    assert status == 200, body
    assert body == {{"greeting": "ni hao", "user": student.id}}


@pytest.mark.gen_test
async def test_hello_needs_a_login(api):
    status, body = await api.get("/api/v1/{name}/hello")
    assert status == 401 and body["error"]["code"] == "unauthorized"


@pytest.mark.gen_test
async def test_the_plugin_is_loaded(admin):
    status, body = await admin.get("/api/v1/plugins")
    assert status == 200
    assert [p["name"] for p in body["plugins"]] == ["{name}"]
'''

README = """\
# kpay-{dash}

A kpay plugin. Install it next to kpay and enable it in the config:

    pip install -e .
    # config.toml
    [plugins]
    enabled = ["{name}"]   # or ["*"]: every installed plugin

    [{name}]
    greeting = "hello"

Check that kpay sees it with `kpay --config config.toml plugins`, and run the tests
(a real server and database, from kpay's pytest fixtures) with `pytest`.
"""


def create_plugin(name: str, where: str | Path = ".") -> Path:
    """Write ``kpay-<name>/`` under ``where`` and return its path."""
    if not NAME.match(name):
        raise PluginError(f"plugin name {name!r}: use 2 to 31 lower-case letters, digits "
                          "and _, starting with a letter")
    dash = name.replace("_", "-")
    package = f"kpay_{name}"
    folder = Path(where) / f"kpay-{dash}"
    if folder.exists():
        raise PluginError(f"{folder} already exists")
    values = {"name": name, "dash": dash, "package": package, "upper": name.upper(),
              "camel": "".join(part.title() for part in name.split("_"))}
    files = {
        "setup.cfg": SETUP_CFG,
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{package}/__init__.py": MODULE,
        f"tests/test_{name}.py": TEST,
    }
    for relative, template in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
    return folder
