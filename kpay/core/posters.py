"""Share posters: ``GET /api/v1/posters/{resource}`` -> a PNG (cover, title, price,
author, QR code of the page) to save and post in WeChat. docs/api.md "Share posters".

What a poster shows comes from the plugin owning the resource (hook ``share_card``,
docs/plugins.md); ``user:<id>`` (a consultant's profile) is answered here from the
users service. Unknown, unpublished or not-visible resources are one 404.

Posters are cached on disk under ``var/posters/`` by a hash of everything drawn (so an
edited title makes a new poster), the folder kept under :data:`CACHE_BYTES` by dropping
the least recently written files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kpay.core.errors import BadRequest, NotFound
from kpay.core.media.service import is_public
from kpay.core.plugins import close_awaitables, each_implementation
from kpay.core.poster_draw import PosterContent, draw_poster
from kpay.core.web import BaseHandler, Route, api

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.posters")

RESOURCE = re.compile(r"^([a-z_]{1,32}):([A-Za-z0-9_.-]{1,128})$")
#: A page path on this server: absolute path, no scheme or host, printable and short.
PAGE_PATH = re.compile(r"^/(?!/)[\x21-\x7e]{0,500}$")
#: Bumped when the drawing changes, so cached posters of the old look are not served.
DRAWING_VERSION = "1"
CACHE_DIR = "posters"
CACHE_BYTES = 64 * 1024 * 1024
#: Largest cover read from media storage, and the size read (750 px wide).
MAX_COVER_BYTES = 8 * 1024 * 1024
COVER_VARIANT = "card"
PUBLIC_MEDIA = re.compile(r"^(?:https?://[^/]+)?/media/([A-Za-z0-9_-]{1,64})/(?:thumb|card|full)$")
TITLE_CHARS, DESCRIPTION_CHARS, NAME_CHARS = 200, 300, 64


async def share_card(app: KPay, resource: str, user_id: str) -> dict[str, Any] | None:
    """What a share card or poster of ``resource`` shows to ``user_id``, or None."""
    prefix, _, ident = resource.partition(":")
    if prefix == "user":
        return await consultant_card(app, ident)
    calls = each_implementation(app.pm, "share_card",
                                {"app": app, "resource": resource, "user_id": user_id})
    for index, called in enumerate(calls):
        try:
            card = await called.result()
        except Exception:
            close_awaitables(calls[index + 1:])
            raise
        if card is not None:
            close_awaitables(calls[index + 1:])
            return card
    return None


async def consultant_card(app: KPay, user_id: str) -> dict[str, Any] | None:
    """A consultant's public profile; nobody else has a poster."""
    profile = await app.users.profile(user_id)
    if profile is None or profile["blocked"] or profile["role"] != "consultant":
        return None
    description = profile.get("title") or profile.get("bio") or "欢迎向我提问、预约咨询"
    card: dict[str, Any] = {"title": profile["name"], "description": description,
                            "price": None, "author_id": None,
                            "path": f"/static/profile.html?id={user_id}"}
    # The avatar as the cover: by id, or by its public URL (/media/<id>/thumb).
    if profile.get("avatar_media_id"):
        card["cover_media_id"] = profile["avatar_media_id"]
    elif profile.get("avatar_url"):
        card["cover_url"] = profile["avatar_url"]
    return card


def page_base(handler: BaseHandler) -> str:
    """This server's public origin: ``[server] public_url``, else the request's own."""
    public = handler.kpay.settings.server.public_url.rstrip("/")
    if public:
        return public
    return f"{handler.request.protocol}://{handler.request.host}"


def checked_path(card: dict[str, Any]) -> str:
    path = card.get("path")
    if not isinstance(path, str) or not PAGE_PATH.match(path):
        # A plugin's mistake, not the caller's: fail loudly rather than draw a bad QR.
        raise ValueError(f"share_card path must be a path on this server, got {path!r}")
    return path


def clip(value: Any, limit: int) -> str:
    return str(value or "").strip()[:limit]


async def usable_cover(app: KPay, card: dict[str, Any]) -> dict[str, Any] | None:
    """The media document of the card's cover if it may be drawn now: a public image,
    ready (not taken down), of a bounded size. ``cover_url`` counts only as a URL of this
    server's public images (``/media/<id>/<variant>``): a poster never makes kpay fetch
    an address a user chose."""
    media_id = card.get("cover_media_id")
    if not media_id and isinstance(card.get("cover_url"), str):
        found = PUBLIC_MEDIA.match(card["cover_url"])
        media_id = found.group(1) if found else None
    service = getattr(app, "media", None)
    if not isinstance(media_id, str) or service is None:
        return None
    media = await service.find(media_id)
    if media is None or media["status"] != "ready" or not is_public(media):
        return None  # taken down, unfinished, or not a public image: the placeholder
    size = media.get("files", {}).get(COVER_VARIANT, 0)
    return media if 0 < size <= MAX_COVER_BYTES else None


async def cover_bytes(app: KPay, media: dict[str, Any] | None) -> bytes | None:
    """The cover's 750 px image from kpay's own media storage (local disk or S3)."""
    if media is None:
        return None
    size = media["files"][COVER_VARIANT]
    try:
        blocks = [block async for block in app.media.storage.read(
            f"{media['_id']}/{COVER_VARIANT}", 0, size - 1)]
    except Exception as e:  # storage down: a poster with the placeholder beats none
        log.warning("posters: cover %s unreadable: %s", media["_id"], e)
        return None
    return b"".join(blocks)


class PosterCache:
    """PNG files by content hash under ``var/posters``, at most ``limit`` bytes."""

    def __init__(self, folder: Path, limit: int = CACHE_BYTES) -> None:
        self.folder, self.limit = folder, limit

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.png"

    def get(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except OSError:
            return None

    def put(self, key: str, png: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{key}.{os.getpid()}.tmp"
        temporary.write_bytes(png)
        temporary.replace(self.path(key))  # atomic: a reader never sees half a file
        self.trim()

    def trim(self) -> None:
        files = []
        for entry in os.scandir(self.folder):
            if entry.name.endswith(".png"):
                stat = entry.stat()
                files.append((stat.st_mtime, stat.st_size, entry.path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.limit:
                break
            Path(path).unlink(missing_ok=True)
            total -= size


def poster_cache(app: KPay) -> PosterCache:
    return app.plugin_state("core.posters", lambda: PosterCache(Path(app.var_dir) / CACHE_DIR))


async def poster_png(app: KPay, card: dict[str, Any], url: str) -> tuple[bytes, bool]:
    """(PNG, whether it came from the cache) for a card whose page is at ``url``."""
    author = None
    if card.get("author_id"):
        profile = await app.users.profile(str(card["author_id"]))
        author = clip(profile["name"], NAME_CHARS) if profile else None
    cover = await usable_cover(app, card)
    drawn = {"v": DRAWING_VERSION, "title": clip(card.get("title"), TITLE_CHARS),
             "description": clip(card.get("description"), DESCRIPTION_CHARS),
             "price": card.get("price"), "author": author, "url": url,
             # The cover as it may be drawn now: a taken-down cover changes the key, so
             # a cached poster never shows it again.
             "cover": cover["_id"] if cover else None}
    key = hashlib.sha256(json.dumps(drawn, sort_keys=True, default=str).encode()).hexdigest()
    cache = poster_cache(app)
    cached = await asyncio.to_thread(cache.get, key)
    if cached is not None:
        return cached, True
    price = card.get("price")
    content = PosterContent(
        title=drawn["title"], description=drawn["description"],
        price=price if isinstance(price, int) and price >= 0 else None,
        author=author, url=url, cover=await cover_bytes(app, cover))
    png = await asyncio.to_thread(draw_poster, content)
    await asyncio.to_thread(cache.put, key, png)
    return png, False


class PosterHandler(BaseHandler):
    @api("Share poster of a room, course or consultant (PNG with a QR code of its page)",
         media_type="image/png", limit="write")
    async def get(self, resource: str) -> None:
        user = self.require_user()
        if not RESOURCE.match(resource):
            raise BadRequest("resource must be <prefix>:<id>", code="invalid_field",
                             field="resource")
        card = await share_card(self.kpay, resource, user.id)
        if card is None:
            raise NotFound(f"no poster for {resource}", code="not_found")
        url = page_base(self) + checked_path(card)
        png, cached = await poster_png(self.kpay, card, url)
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "private, max-age=300")
        self.set_header("X-Poster-Cache", "hit" if cached else "miss")
        self.finish(png)


def poster_routes() -> list[Route]:
    return [Route("/api/v1/posters/{resource}", PosterHandler, tags=("sharing",))]
