"""``app.media``: the media service plugins use (docs/media.md, docs/plugins.md).

Plugins keep media ids in their own documents (a course's cover, a lesson's audio) and
ask here: ``attach`` checks an id a user hands in, ``public_url`` and ``signed_url``
make the URLs pages load, ``describe`` shows many at once.
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, DESCENDING

from kpay.core.errors import BadRequest, NotFound
from kpay.core.media.quota import USAGE, Quotas
from kpay.core.media.signing import SignedMedia, UrlSigner
from kpay.core.media.storage import Storage, make_storage, media_root
from kpay.core.scheduler import PeriodicJob
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.app import KPay

MEDIA = "media"
UPLOADS = "media_uploads"
INDEXES = [
    IndexSpec.of(MEDIA, "owner_id", ("created_at", DESCENDING)),
    IndexSpec.of(UPLOADS, "user_id", ("created_at", DESCENDING)),
    IndexSpec.of(UPLOADS, "status", ("expires_at", ASCENDING)),
]
#: Core collections without an index of their own (the usage counters, by ``_id``).
COLLECTIONS_WITHOUT_INDEXES = frozenset({USAGE})
#: Purposes whose images anyone may load at ``/media/<id>/<variant>``.
PUBLIC_PURPOSES = ("cover", "avatar")
IMAGE_VARIANTS = ("thumb", "card", "full")
MEDIA_ID = re.compile(r"md[0-9a-f]{22}")
MAX_DESCRIBE = 1000
#: Uploads checked and processed at once in a process. A small image file may decode to
#: hundreds of MB (40 Mpx: about 500 MB and 2 s of CPU), and the threads it runs in also
#: read local media for serving: a few at a time, the others wait their turn.
PROCESSING_SLOTS = 2


def new_media_id() -> str:
    return "md" + uuid.uuid4().hex[:22]


def is_public(media: dict[str, Any]) -> bool:
    return media["kind"] == "image" and media["purpose"] in PUBLIC_PURPOSES


class MediaService:
    """``app.media``."""

    def __init__(self, app: KPay) -> None:
        self.app = app
        self.settings = app.settings.media
        self.root = media_root(self.settings, app.var_dir)
        self.storage: Storage = make_storage(self.settings, app.var_dir)
        self.signer = UrlSigner(app.tokens.secret)
        self.quotas = Quotas(app.store, self.settings)
        self.processing = asyncio.Semaphore(PROCESSING_SLOTS)
        # Tornado closes the connection on any body past [server] max_discard_bytes,
        # chunks included: a chunk is never larger.
        self.chunk_size = min(self.settings.chunk_bytes, app.settings.server.max_discard_bytes)

    @property
    def collection(self) -> Any:
        return self.app.store[MEDIA]

    # -- for plugins -------------------------------------------------------------------

    async def attach(self, media_id: str, *, owner_id: str,
                     kinds: Iterable[str] = ("image",),
                     purposes: Iterable[str] | None = None) -> dict[str, Any]:
        """The public fields of media ``media_id`` if ``owner_id`` uploaded it, it is of
        one of ``kinds`` (and ``purposes``, when given) and not taken down; else 400
        ``invalid_media``. For a plugin that stores an id a user handed in."""
        media = await self.find(media_id)
        kinds, purposes = tuple(kinds), tuple(purposes) if purposes is not None else None
        if (media is None or media["owner_id"] != owner_id or media["status"] != "ready"
                or media["kind"] not in kinds
                or (purposes is not None and media["purpose"] not in purposes)):
            raise BadRequest(f"no usable {' or '.join(kinds)} of yours with this id",
                             code="invalid_media", field="media_id")
        return self.public(media)

    def public_url(self, media_id: str, variant: str = "card") -> str:
        """Where a public image (purpose cover or avatar) is served: thumb (160 px wide),
        card (750 px wide) or full (at most 1600 px)."""
        if variant not in IMAGE_VARIANTS:
            raise ValueError(f"unknown image variant {variant!r}")
        return f"{self.app.settings.server.public_url.rstrip('/')}/media/{media_id}/{variant}"

    def signed_url(self, media_id: str, *, user_id: str, resource: str,
                   ttl: int | None = None, action: str = "view") -> str:
        """A short-lived URL of paid media for ``user_id``, who must be allowed to do
        ``action`` to ``resource`` (``view`` ``lesson:<course>/<lesson>``; ``enter``
        ``room:<id>`` for a voice answer) when it is fetched."""
        ttl = self.settings.signed_url_ttl_seconds if ttl is None else ttl
        expires = math.ceil(self.app.clock.time()) + max(1, int(ttl))
        token = self.signer.sign(SignedMedia(media_id, expires, user_id, resource, action))
        # In the query: no log line shows a query's token value (kpay/core/logs.py).
        return f"{self.app.settings.server.public_url.rstrip('/')}/media/s?token={token}"

    async def describe(self, media_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{id: MEDIA}`` of many at once (one query); ids of nothing, or of media taken
        down, are left out. At most 1000 ids, else ValueError."""
        ids = [i for i in dict.fromkeys(media_ids) if isinstance(i, str) and MEDIA_ID.fullmatch(i)]
        if len(ids) > MAX_DESCRIBE:
            raise ValueError(f"describe takes at most {MAX_DESCRIBE} ids")
        found = self.collection.find({"_id": {"$in": ids}, "status": "ready"})
        return {media["_id"]: self.public(media) async for media in found}

    # -- for the core ------------------------------------------------------------------

    async def find(self, media_id: str) -> dict[str, Any] | None:
        if not isinstance(media_id, str) or not MEDIA_ID.fullmatch(media_id):
            return None
        return await self.collection.find_one({"_id": media_id})

    def public(self, media: dict[str, Any]) -> dict[str, Any]:
        """MEDIA: what the API and plugins show of a media document."""
        shown = {"id": media["_id"], "kind": media["kind"], "purpose": media["purpose"],
                 "content_type": media["content_type"], "size": media["size"]}
        for name in ("width", "height", "duration_seconds"):
            if media.get(name) is not None:
                shown[name] = media[name]
        if is_public(media):
            shown["url"] = self.public_url(media["_id"])
        return shown

    async def takedown(self, media_id: str, *, actor: str, reason: str,
                       source: str) -> dict[str, Any]:
        """Stop serving ``media_id`` everywhere (public and signed URLs, ``attach``), and
        record who did it. The files stay for the operator's inquiry."""
        media = await self.find(media_id)
        if media is None:
            raise NotFound("no such media", code="media_not_found")
        now = self.app.clock.now()
        await self.collection.update_one(
            {"_id": media_id, "status": "ready"},
            {"$set": {"status": "taken_down", "taken_down_at": now, "taken_down_by": actor}})
        await self.app.audit.record(actor, "media.takedown", f"media:{media_id}",
                                    reason=reason, source=source, owner=media["owner_id"],
                                    kind=media["kind"], purpose=media["purpose"])
        media = await self.find(media_id) or media
        return {**self.public(media), "status": media["status"]}

    def jobs(self) -> list[PeriodicJob]:
        from kpay.core.media.uploads import expire_uploads

        return [PeriodicJob("media.expire_uploads", lambda: expire_uploads(self), 600)]

    def upload_expiry(self) -> timedelta:
        return timedelta(hours=self.settings.upload_ttl_hours)

    async def close(self) -> None:
        await self.storage.close()
