"""Consultants on the home page (docs/consult_billing.md, "Storefront" under "Routes"):
each saved profile in ``app.search``, found by name and title while available."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kpay.core.app import KPay

KIND = "consultant"


def search_item(doc: dict[str, Any]) -> dict[str, Any]:
    """``app.search.put`` arguments for a profile document."""
    name = doc.get("name") or doc["_id"]
    return {"item_id": doc["_id"], "title": doc.get("title") or name, "author_id": doc["_id"],
            "author_name": name, "category": doc.get("category"),
            "visible": doc["available"],
            "extra": {"rate_per_minute": doc["rate_per_minute"], "title": doc.get("title", "")}}


async def indexed(app: KPay, doc: dict[str, Any]) -> dict[str, Any]:
    """Put the saved profile ``doc`` in search; returns it."""
    await app.search.put(KIND, **search_item(doc))
    return doc


async def backfill(app: KPay, saved: AsyncIterable[dict[str, Any]]) -> None:
    """The ``saved`` profiles from before search existed, once (``on_startup``)."""
    async def items() -> AsyncIterator[dict[str, Any]]:
        async for doc in saved:
            yield search_item(doc)
    await app.search.backfill(KIND, items())
