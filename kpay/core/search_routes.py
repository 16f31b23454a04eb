"""Search and categories for the home page (docs/api.md "Search"): public, so a
visitor not yet logged in can look around; rate limited per client IP (``read``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from kpay.core.errors import BadRequest
from kpay.core.search import MAX_LIMIT, MAX_QUERY_CHARS, check_kind, cursor_offset
from kpay.core.web import BaseHandler, Route, api

MAX_RAW_QUERY_CHARS = 200  # longer input is refused, not silently searched


class SearchItem(BaseModel):
    kind: str
    id: str
    title: str
    author_id: str
    author_name: str
    category: str | None
    cover_url: str | None
    #: What the item's plugin adds for its card: price, start time, state...
    extra: dict[str, Any]
    updated_at: datetime


class SearchPage(BaseModel):
    items: list[SearchItem]
    #: Pass as ``cursor`` for the next page; None at the end.
    next_cursor: str | None


class CategoryList(BaseModel):
    categories: list[str]


class SearchHandler(BaseHandler):
    @api("Search rooms, courses and consultants by title or author (Chinese too); "
         f"q is cut to {MAX_QUERY_CHARS} characters; no q: newest first",
         auth=False, query=("q", "kind", "category", "limit", "cursor"),
         response=SearchPage)
    async def get(self) -> None:
        q = self.get_query_argument("q", "")
        if len(q) > MAX_RAW_QUERY_CHARS:
            raise BadRequest(f"q is at most {MAX_RAW_QUERY_CHARS} characters",
                             code="invalid_field", field="q")
        kind = self.get_query_argument("kind", "") or None
        category = self.get_query_argument("category", "") or None
        search = self.kpay.search
        items, next_offset = await search.find(
            q, kind=check_kind(kind) if kind else None,
            category=search.check_category(category),
            limit=self.query_int("limit", 20, 1, MAX_LIMIT),
            offset=cursor_offset(self.get_query_argument("cursor", None)))
        self.write_json({"items": items,
                         "next_cursor": None if next_offset is None else str(next_offset)})


class CategoriesHandler(BaseHandler):
    @api("The categories authors choose from ([storefront] categories)", auth=False,
         response=CategoryList)
    def get(self) -> None:
        self.write_json({"categories": list(self.kpay.search.categories)})


def routes() -> list[Route]:
    return [Route("/api/v1/search", SearchHandler, tags=("core",)),
            Route("/api/v1/categories", CategoriesHandler, tags=("core",))]
