"""Analytics tests run with the core and the money tests' throwaway plugin (a
server-priced gadget paid to ``seller1``); the books must balance after each."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "money"))

from money_fakes import MoneyTestPlugin

from kpay import hookimpl


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": []}, "money": {"topup_max": 100_000}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("money_test", MoneyTestPlugin()), ("sections_test", SectionsPlugin())]


class SectionsPlugin:
    """A plugin's dashboard section (hook ``analytics_sections``): how many days the
    range holds, for a seller or the platform."""

    @hookimpl
    def register_collections(self, app: Any) -> list[str]:
        return []

    @hookimpl
    def analytics_sections(self, owner_id: str | None, start: Any, end: Any) -> list[dict]:
        days = round((end - start).total_seconds() / 86_400)
        return [{"key": "test_days", "title": "测试区间", "unit": "count",
                 "items": [{"label": "天数", "value": days,
                            "note": "平台" if owner_id is None else "本人"}]}]
