"""Money tests run with only the core and a throwaway test plugin (a server-priced kind
and a fake payment provider); after every test that ran the app the books must balance.
A module marked ``payouts`` (``pytestmark = pytest.mark.payouts``) gets the fake payout
provider and the payout tests' settings instead (tests/money/payout_helpers.py)."""

from __future__ import annotations

from typing import Any

import pytest
from money_fakes import MoneyTestPlugin
from payout_helpers import OVERRIDES, payout_plugin

from kpay.testing import assert_books_balanced


def for_payouts(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("payouts") is not None


@pytest.fixture
def money_plugin(request: pytest.FixtureRequest) -> MoneyTestPlugin:
    return payout_plugin() if for_payouts(request) else MoneyTestPlugin()


@pytest.fixture
def kpay_overrides(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    if for_payouts(request):
        return OVERRIDES
    return {"plugins": {"enabled": []}, "money": {"topup_max": 100_000}}


@pytest.fixture
def fake(money_plugin: MoneyTestPlugin) -> Any:
    """The test plugin's payment provider (in ``payouts`` modules, it also pays out)."""
    return money_plugin.provider


@pytest.fixture
def kpay_extra_plugins(money_plugin: MoneyTestPlugin) -> list[tuple[str, Any]]:
    return [("money_test", money_plugin)]


@pytest.fixture(autouse=True)
def books_balance_after_test(request: pytest.FixtureRequest) -> Any:
    """Reconcile the books when a test that ran the app ends (opt out with
    ``@pytest.mark.books_may_break`` for tests that plant a break on purpose)."""
    if "kpay_app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("kpay_app")
    io_loop = request.getfixturevalue("io_loop")
    yield
    if request.node.get_closest_marker("books_may_break") is None:
        io_loop.run_sync(lambda: assert_books_balanced(app))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "books_may_break: the test plants a books break; skip the final reconcile")
    config.addinivalue_line(
        "markers", "payouts: the money test plugin with the fake payout provider, and the "
        "payout tests' settings (tests/money/payout_helpers.py)")
