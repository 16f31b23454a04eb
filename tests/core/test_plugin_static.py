"""A plugin package's ``static/`` folder is served at ``/static/plugins/<name>/``
(docs/plugins.md, "Pages and static files")."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

PAGE = "<!doctype html><meta charset=utf-8><title>打卡</title><p>今日打卡</p>"


@pytest.fixture
def kpay_extra_plugins(tmp_path: Path) -> Any:
    package = tmp_path / "kpay_checkin_pages"
    (package / "static" / "js").mkdir(parents=True)
    (package / "__init__.py").write_text('"""A plugin with only pages."""\n')
    (package / "static" / "index.html").write_text(PAGE, encoding="utf-8")
    (package / "static" / "js" / "page.js").write_text("export const ok = true;\n")
    (tmp_path / "kpay_single_module.py").write_text('"""No folder, so no pages."""\n')
    sys.path.insert(0, str(tmp_path))
    try:
        yield [("checkin", importlib.import_module("kpay_checkin_pages")),
               ("single", importlib.import_module("kpay_single_module"))]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("kpay_checkin_pages", None)
        sys.modules.pop("kpay_single_module", None)


@pytest.mark.gen_test
async def test_a_plugins_pages_are_served(api):
    status, body, headers = await api.exchange("GET", "/static/plugins/checkin/")
    assert status == 200 and body == PAGE
    assert headers["Content-Type"].startswith("text/html")
    assert "Content-Security-Policy" in headers  # the core's headers apply
    status, body, headers = await api.exchange("GET", "/static/plugins/checkin/js/page.js")
    assert status == 200 and "ok = true" in body


@pytest.mark.gen_test
@pytest.mark.parametrize("path", [
    "/static/plugins/checkin/missing.html",
    "/static/plugins/checkin/../__init__.py",
    "/static/plugins/checkin/%2e%2e/__init__.py",
    "/static/plugins/single/",
    "/static/plugins/nobody/index.html",
])
async def test_nothing_else_is_served(api, path):
    status, body = await api.get(path)
    assert status in (403, 404), (path, status)
    assert "__init__" not in str(body) and "A plugin" not in str(body)
    if status == 404:
        assert body["error"]["code"] in ("not_found", "http_error")
