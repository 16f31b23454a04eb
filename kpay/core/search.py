"""``app.search``: finding rooms, courses and consultants by title and author, in
Chinese too (docs/plugins.md "app.search"; the API is docs/api.md "Search").

MongoDB's text index splits words on spaces, and Chinese has none: "产品经理" inside
"如何成为产品经理" would never match. So each item keeps *grams* of its title and its
author's name, and a query matches with ``$all`` on its own grams:

- a run of Chinese (any letter outside the Latin range) gives its character bigrams,
  and its single characters, so a one-character query finds something too;
- a Latin or digit word, lowercased, gives its prefixes (2 to 20 characters, and the
  first character), so "pyth" finds "Python".

A query is normalised as the stored text is (NFKC, lowercase), cut to
``MAX_QUERY_CHARS``, and only ever becomes a list of literal strings inside ``$all``:
nothing the user types reaches a regular expression. Results rank title hits before
author-only hits, newest first within each, paginated by an opaque offset cursor over
at most ``MAX_CANDIDATES`` matches.

Plugins own their items: they ``put`` one when it is created or changed, and
``remove`` it (or put it with ``visible=False``) when it should no longer be found.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any

from pymongo import DESCENDING

from kpay.core.digits import parse_digits
from kpay.core.errors import BadRequest
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.clock import Clock
    from kpay.core.store import Store

log = logging.getLogger("kpay.search")

SEARCH = "search_items"
INDEXES = [
    IndexSpec.of(SEARCH, "grams", "visible"),
    IndexSpec.of(SEARCH, "kind", "visible", ("updated_at", DESCENDING)),
    IndexSpec.of(SEARCH, "visible", ("updated_at", DESCENDING)),
]
MAX_QUERY_CHARS = 50
MAX_WORD_CHARS = 20
MAX_TITLE_CHARS = 200
MAX_NAME_CHARS = 64
MAX_EXTRA_BYTES = 2000
MAX_LIMIT = 50
#: Matches looked at per query: ranking and paging happen within them.
MAX_CANDIDATES = 500
KIND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_")


def normalise(text: str) -> str:
    """NFKC (full-width letters and digits become ASCII) and lowercase."""
    return unicodedata.normalize("NFKC", text).lower()


def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LN"


def _runs(text: str) -> list[tuple[bool, str]]:
    """Split normalised text into runs of ``(latin, chars)``; anything that is not a
    letter or digit separates runs."""
    runs: list[tuple[bool, str]] = []
    current, latin = "", False
    for char in text:
        if not _is_word_char(char):
            if current:
                runs.append((latin, current))
            current = ""
            continue
        is_latin = ord(char) < 0x2E80  # Latin, Greek, Cyrillic... spaced scripts
        if current and is_latin != latin:
            runs.append((latin, current))
            current = ""
        current += char
        latin = is_latin
    if current:
        runs.append((latin, current))
    return runs


def index_grams(text: str) -> set[str]:
    """What an item's text is found by: bigrams and characters of Chinese runs, and
    the prefixes of Latin words."""
    grams: set[str] = set()
    for latin, run in _runs(normalise(text)):
        if latin:
            word = run[:MAX_WORD_CHARS]
            grams.update(word[:n] for n in range(1, len(word) + 1))
        else:
            grams.update(run)
            grams.update(run[i:i + 2] for i in range(len(run) - 1))
    return grams


def query_grams(query: str) -> list[str]:
    """What a query must all match: bigrams of Chinese runs (the character itself for
    a one-character run) and whole Latin words (as prefixes of stored words)."""
    grams: list[str] = []
    for latin, run in _runs(normalise(query)[:MAX_QUERY_CHARS]):
        if latin:
            grams.append(run[:MAX_WORD_CHARS])
        elif len(run) == 1:
            grams.append(run)
        else:
            grams.extend(run[i:i + 2] for i in range(len(run) - 1))
    return list(dict.fromkeys(grams))


def check_kind(kind: str) -> str:
    if not (1 <= len(kind) <= 32 and set(kind) <= KIND_CHARS):
        raise BadRequest("kind must be 1 to 32 lowercase letters or _", code="invalid_field",
                         field="kind")
    return kind


def _bounded_extra(extra: dict[str, Any] | None) -> dict[str, Any]:
    extra = dict(extra or {})
    if len(json.dumps(extra, default=str, ensure_ascii=False).encode()) > MAX_EXTRA_BYTES:
        raise ValueError(f"search extra over {MAX_EXTRA_BYTES} bytes")
    return extra


def public(doc: dict[str, Any]) -> dict[str, Any]:
    return {"kind": doc["kind"], "id": doc["item_id"], "title": doc["title"],
            "author_id": doc["author_id"], "author_name": doc["author_name"],
            "category": doc.get("category"), "cover_url": doc.get("cover_url"),
            "extra": doc.get("extra") or {}, "updated_at": doc["updated_at"]}


class Search:
    """``app.search``: the items plugins put, found by grams (see the module doc)."""

    def __init__(self, store: Store, clock: Clock, categories: Iterable[str]) -> None:
        self.store, self.clock = store, clock
        self.categories = tuple(categories)

    @property
    def collection(self) -> Any:
        return self.store[SEARCH]

    def check_category(self, category: str | None, field: str = "category") -> str | None:
        """``category`` if it is one of ``[storefront] categories`` (or None/empty:
        None); else 400 ``invalid_field``. For plugins' create and update bodies."""
        if category is None or category == "":
            return None
        if category not in self.categories:
            raise BadRequest(f"{field} must be one of the configured categories",
                             code="invalid_field", field=field)
        return category

    async def put(self, kind: str, item_id: str, *, title: str, author_id: str,
                  author_name: str, category: str | None = None,
                  cover_url: str | None = None, extra: dict[str, Any] | None = None,
                  visible: bool = True) -> None:
        """Add or replace the item ``kind``/``item_id``. ``extra`` (at most 2000 bytes of
        JSON) is shown with each result (price, start time...)."""
        check_kind(kind)
        title = title[:MAX_TITLE_CHARS]
        author_name = (author_name or author_id)[:MAX_NAME_CHARS]
        grams = index_grams(title) | index_grams(author_name)
        doc = {"kind": kind, "item_id": item_id, "title": title, "author_id": author_id,
               "author_name": author_name, "category": category, "cover_url": cover_url,
               "extra": _bounded_extra(extra), "visible": visible,
               "grams": sorted(grams),
               "updated_at": self.clock.now()}
        await self.collection.replace_one({"_id": f"{kind}:{item_id}"}, doc, upsert=True)

    async def remove(self, kind: str, item_id: str) -> None:
        await self.collection.delete_one({"_id": f"{check_kind(kind)}:{item_id}"})

    async def backfill(self, kind: str, items: AsyncIterable[dict[str, Any]]) -> int:
        """Index existing items once per kind (a plugin's ``on_startup`` for data from
        before search existed): each item is the keyword arguments of :meth:`put` with
        ``item_id``. Does nothing when ``kind`` was backfilled before; returns how many
        items it put. Never raises: a failure is logged and tried again next start."""
        marker = {"_id": f"backfilled:{check_kind(kind)}"}
        count = 0
        try:
            if await self.collection.find_one(marker, {"_id": 1}):
                return 0
            async for item in items:
                await self.put(kind, **item)
                count += 1
            await self.collection.replace_one(marker, {**marker, "marker": True}, upsert=True)
        except Exception:
            # An index can be rebuilt: a failure here must not stop the plugin's own
            # start-up work (its recovery runs in the same on_startup). Without the
            # marker, the next start tries again.
            log.exception("search: backfilling %s failed after %d items", kind, count)
        return count

    async def find(self, query: str = "", *, kind: str | None = None,
                   category: str | None = None, limit: int = 20,
                   offset: int = 0) -> tuple[list[dict[str, Any]], int | None]:
        """``(items, next_offset)``: visible items matching every gram of ``query``
        (no query: all), title hits first, newest first; ``next_offset`` None at the end."""
        limit = max(1, min(limit, MAX_LIMIT))
        if offset < 0 or offset >= MAX_CANDIDATES:
            return [], None
        grams = query_grams(query)
        if query.strip() and not grams:
            return [], None  # only punctuation: nothing can match
        where: dict[str, Any] = {"visible": True}
        if grams:
            where["grams"] = {"$all": grams}
        if kind:
            where["kind"] = check_kind(kind)
        if category:
            where["category"] = category
        cursor = self.collection.find(where, {"grams": 0}).sort(
            "updated_at", DESCENDING).limit(MAX_CANDIDATES)
        found = [doc async for doc in cursor]
        wanted = set(grams)
        # A title hit: the title alone has every gram (recomputed from the title, so the
        # grams need not travel). sort() is stable: newest first stays within each group.
        found.sort(key=lambda doc: not wanted <= index_grams(doc["title"]))
        page = found[offset:offset + limit]
        end = offset + len(page)
        return [public(doc) for doc in page], end if end < len(found) else None


def cursor_offset(cursor: str | None) -> int:
    """The offset an opaque cursor stands for (it is the decimal offset)."""
    if not cursor:
        return 0
    offset = parse_digits(cursor, max_digits=4)
    if offset is None:
        raise BadRequest("cursor is not one this server gave", code="invalid_field",
                         field="cursor")
    return offset

