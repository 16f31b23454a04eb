"""What plugins add to a dashboard (hook ``analytics_sections``, docs/plugins.md), each
section checked and bounded before it is shown."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kpay.core.plugins import each_implementation

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.analytics")

MAX_ITEMS = 50
KEY = re.compile(r"^[a-z0-9_]{1,40}$")
UNITS = ("count", "minutes", "fen")


def checked(section: Any) -> dict[str, Any]:
    """The section with only the known fields, or ValueError."""
    if not isinstance(section, dict) or not KEY.match(str(section.get("key", ""))):
        raise ValueError("a section needs a key of 1 to 40 lowercase letters, digits or _")
    title, unit, items = section.get("title"), section.get("unit", "count"), section.get("items")
    if not isinstance(title, str) or not 0 < len(title) <= 40:
        raise ValueError(f"section {section['key']}: title must be 1 to 40 characters")
    if unit not in UNITS or not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise ValueError(f"section {section['key']}: unit one of {UNITS}, "
                         f"items a list of at most {MAX_ITEMS}")
    out = []
    for item in items:
        value = item.get("value") if isinstance(item, dict) else None
        if (not isinstance(item.get("label"), str) or isinstance(value, bool)
                or not isinstance(value, int | float)):
            raise ValueError(f"section {section['key']}: an item needs a label and a number")
        note = item.get("note")
        out.append({"label": item["label"][:60], "value": value,
                    **({"note": str(note)[:60]} if note else {})})
    return {"key": section["key"], "title": title, "unit": unit, "items": out}


async def plugin_sections(app: KPay, owner_id: str | None, start: datetime,
                          end: datetime) -> list[dict[str, Any]]:
    calls = each_implementation(app.pm, "analytics_sections",
                                {"app": app, "owner_id": owner_id, "start": start, "end": end})
    sections: list[dict[str, Any]] = []
    seen: set[str] = set()
    failure: Exception | None = None
    for called in calls:
        try:
            answer = await called.result()
            found = [checked(section) for section in (answer or [])]
        except Exception as e:
            log.error("plugin %r failed in analytics_sections", called.plugin, exc_info=e)
            failure = failure or e
            continue
        for section in found:
            if section["key"] in seen:
                log.warning("plugin %r answered analytics section %r again; left out",
                            called.plugin, section["key"])
                continue
            seen.add(section["key"])
            sections.append(section)
    if failure is not None and app.dev:
        raise failure
    return sections
