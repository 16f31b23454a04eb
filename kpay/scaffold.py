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

[options.package_data]
# The plugin's own pages (static/), served at /static/plugins/{name}/.
{package} = static/*, static/**/*

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

INIT = '''\
"""kpay plugin {name}. Every kpay plugin has this shape (docs/plugins.md, "One plugin
shape"): the hooks here, each one line handing over to

- settings.py  its config section ``[{name}]``;
- store.py     the collections it owns, their indexes, the reads and writes;
- handlers.py  its HTTP handlers and routes;
- jobs.py      its periodic jobs;
- static/      its own pages and files, served at /static/plugins/{name}/.
"""

from kpay import hookimpl
from kpay_{name} import handlers, jobs, store
from kpay_{name}.settings import SECTION, {camel}Settings


@hookimpl
def register_settings():
    return [(SECTION, {camel}Settings)]


@hookimpl
def register_collections(app):
    return store.COLLECTIONS


@hookimpl
def register_indexes(app):
    return store.INDEXES


@hookimpl
def register_routes(app):
    return handlers.routes()


@hookimpl
def register_jobs(app):
    return jobs.jobs(app)
'''

SETTINGS = '''\
"""The config section of {name}: ``[{name}]`` in the TOML file, or
``KPAY_{upper}__<KEY>`` variables."""

from pydantic import Field

from kpay.core.config import Section

SECTION = "{name}"


class {camel}Settings(Section):
    greeting: str = Field("hello", min_length=1, max_length=40)
    #: Greeting counts untouched this long are forgotten by the tidy job.
    keep_days: int = Field(30, ge=1, le=3650)


def settings_of(app) -> {camel}Settings:
    return app.settings.section(SECTION)
'''

STORE = '''\
"""The collections {name} owns and everything that reads or writes them. A plugin
reads only its own collections; it asks the core (app.users, app.money) for the rest."""

from datetime import datetime, timedelta

from pymongo import ReturnDocument

from kpay.core.store import IndexSpec

GREETINGS = "{name}_greetings"
#: What register_collections declares: in tests, any other collection is refused.
COLLECTIONS = [GREETINGS]
INDEXES = [IndexSpec.of(GREETINGS, "seen_at")]


async def greet(app, user_id: str) -> int:
    """Count one more greeting of ``user_id``; return how many so far."""
    doc = await app.store[GREETINGS].find_one_and_update(
        {{"_id": user_id}}, {{"$inc": {{"count": 1}}, "$set": {{"seen_at": app.clock.now()}}}},
        upsert=True, return_document=ReturnDocument.AFTER)
    return doc["count"]


async def forget_before(app, moment: datetime) -> int:
    result = await app.store[GREETINGS].delete_many({{"seen_at": {{"$lt": moment}}}})
    return result.deleted_count


def keep_for(days: int) -> timedelta:
    return timedelta(days=days)
'''

HANDLERS = '''\
"""The HTTP handlers of {name} and its routes (schemas appear in /api/v1/openapi.json)."""

from pydantic import BaseModel

from kpay.core.web import BaseHandler, Route, api
from kpay_{name} import store
from kpay_{name}.settings import settings_of


class Hello(BaseModel):
    """What GET /api/v1/{name}/hello answers."""

    greeting: str
    user: str
    times: int


class HelloHandler(BaseHandler):
    @api("{name}: greet the caller", response=Hello)
    async def get(self) -> None:
        user = self.require_user()
        times = await store.greet(self.kpay, user.id)
        self.write_json({{"greeting": settings_of(self.kpay).greeting, "user": user.id,
                         "times": times}})


def routes() -> list[Route]:
    return [Route("/api/v1/{name}/hello", HelloHandler, tags=("{name}",))]
'''

JOBS = '''\
"""The periodic jobs of {name}: each reads time from app.clock and is safe to run twice
or on two nodes at once."""

from kpay.core.scheduler import PeriodicJob
from kpay_{name} import store
from kpay_{name}.settings import settings_of


def jobs(app) -> list[PeriodicJob]:
    async def tidy() -> int:
        days = settings_of(app).keep_days
        return await store.forget_before(app, app.clock.now() - store.keep_for(days))

    return [PeriodicJob("{name}.tidy", tidy, 3600)]
'''

PAGE = '''\
<!doctype html>
<html lang="zh-CN">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{name}</title>
  <link rel="stylesheet" href="/static/css/kpay.css">
</head>
<body>
  <main class="page">
    <h1>{name}</h1>
    <p>这是插件 {name} 自带的页面（/static/plugins/{name}/）。</p>
  </main>
</body>
</html>
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
    assert body == {{"greeting": "ni hao", "user": student.id, "times": 1}}
    status, body = await student.get("/api/v1/{name}/hello")
    assert body["times"] == 2


@pytest.mark.gen_test
async def test_hello_needs_a_login(api):
    status, body = await api.get("/api/v1/{name}/hello")
    assert status == 401 and body["error"]["code"] == "unauthorized"


@pytest.mark.gen_test
async def test_its_page_is_served(api):
    status, body = await api.get("/static/plugins/{name}/")
    assert status == 200 and "{name}" in body


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
        f"{package}/__init__.py": INIT,
        f"{package}/settings.py": SETTINGS,
        f"{package}/store.py": STORE,
        f"{package}/handlers.py": HANDLERS,
        f"{package}/jobs.py": JOBS,
        f"{package}/static/index.html": PAGE,
        f"tests/test_{name}.py": TEST,
    }
    for relative, template in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
    return folder
