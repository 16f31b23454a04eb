"""Docs stay true: every hook is documented with its exact signature and has a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from kpay.core import hookspecs
from kpay.core.openapi import implemented_methods

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_DOC = ROOT / "docs" / "plugins.md"


def hooks() -> dict[str, str]:
    """{hook name: "name(arg, ...)"} from hookspecs.py."""
    found = {}
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if hasattr(function, "kpay_spec"):
            arguments = ", ".join(inspect.signature(function).parameters)
            found[name] = f"{name}({arguments})"
    return found


def documented() -> dict[str, str]:
    """{hook name: "name(arg, ...)"} from the '### name(...)' headings of docs/plugins.md."""
    headings = re.findall(r"^### `?(\w+)\(([^)]*)\)`?\s*$", PLUGINS_DOC.read_text(), re.M)
    return {name: f"{name}({arguments})" for name, arguments in headings}


def test_hookspecs_are_found():
    assert {"register_routes", "on_order_paid", "register_settings"} <= set(hooks())


@pytest.mark.parametrize("hook", sorted(hooks()))
def test_hook_is_documented_with_its_signature(hook):
    docs = documented()
    assert hook in docs, f"hook {hook} has no '### {hooks()[hook]}' section in docs/plugins.md"
    assert docs[hook] == hooks()[hook], f"docs/plugins.md says {docs[hook]}, hookspecs.py " \
                                        f"says {hooks()[hook]}"


def test_no_documented_hook_is_missing_from_hookspecs():
    assert not set(documented()) - set(hooks())


def test_hookspecs_have_docstrings():
    for name in hooks():
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name


@pytest.mark.parametrize("hook", sorted(hooks()))
def test_hook_has_a_test_of_its_own(hook):
    """A test plugin somewhere under tests/ implements the hook."""
    implementation = re.compile(rf"\bdef {hook}\(")
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name == "test_docs.py":
            continue
        if implementation.search(path.read_text(errors="replace")):
            return
    pytest.fail(f"no test plugin under tests/ implements {hook}")


@pytest.mark.gen_test
async def test_every_route_is_in_the_api_doc(kpay_app):
    """docs/api.md names every route of the core and the built-in plugins (dev mode on)."""
    text = (ROOT / "docs" / "api.md").read_text()
    missing = [f"{method.upper()} {route.path}" for route in kpay_app.routes
               for method in implemented_methods(route.handler)
               if f"`{method.upper()} {route.path}`" not in text]
    assert not missing, f"routes missing from docs/api.md: {missing}"


def internals_section() -> str:
    text = PLUGINS_DOC.read_text()
    start = text.index("## Internals for plugins")
    return text[start:text.index("\n## ", start + 1)]


def test_every_error_class_is_in_the_internals():
    from kpay.core import errors

    classes = [name for name, value in inspect.getmembers(errors, inspect.isclass)
               if issubclass(value, Exception) and value.__module__ == errors.__name__]
    missing = [name for name in classes if f"`{name}`" not in internals_section()]
    assert not missing, f"docs/plugins.md 'Internals for plugins' misses {missing}"


@pytest.mark.parametrize("name", [
    # What a plugin reaches on the app, and the helpers its handlers and kinds use.
    "app.access", "app.tell_user", "app.tell_users", "app.users", "app.clock", "app.money",
    "app.plugin_state", "app.collections", "require_user", "self.body", "query_int",
    "write_json", "@api", "enforce_cap", "orders.get", "orders.refund", "purpose",
    "adjustments.price", "earnings_credits", "ledger.post", "app.search",
    "app.media", "media.attach", "signed_url", "public_url", "describe",
])
def test_each_service_and_helper_is_in_the_internals(name):
    assert name in internals_section(), f"docs/plugins.md 'Internals for plugins' misses {name}"


def test_every_order_field_the_api_shows_is_in_the_internals():
    from kpay.core.money.responses import Order

    section = internals_section()
    fields = [f for f in Order.model_fields if f != "id"]
    missing = [f for f in fields if f"`{f}`" not in section]
    assert not missing, f"order fields missing from the internals: {missing}"
