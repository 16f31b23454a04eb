"""Serving media: public images at ``/media/<id>/<variant>``, paid media at signed URLs
``/media/s?token=<token>`` (docs/media.md, "Serving"). The token rides in the query, which
no log line shows (kpay/core/logs.py).

Local storage is streamed by kpay with HTTP range requests (audio and video seek); S3
storage is a 302 to a presigned URL, made only after kpay's own checks.
"""

from __future__ import annotations

import re
from typing import Any

import tornado.iostream

from kpay.core.errors import ApiError, Forbidden, NotFound
from kpay.core.media.service import IMAGE_VARIANTS, is_public
from kpay.core.web import BaseHandler, api

RANGE = re.compile(r"bytes=(\d{0,15})-(\d{0,15})")


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (inclusive) of a single-range ``Range`` header, or None to send
    the whole file (no header, several ranges, or one kpay does not read: RFC 9110 lets a
    server ignore Range). :class:`Unsatisfiable` when it lies beyond the file."""
    if not header:
        return None
    match = RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - length), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # not a valid range: ignored, as RFC 9110 allows
    if start >= size:
        raise Unsatisfiable()
    return start, min(int(last), size - 1) if last else size - 1


def gone() -> ApiError:
    return ApiError("this media was taken down", code="media_taken_down", status=410)


class MediaBody(BaseHandler):
    """Writes a stored file (or a range of it), or redirects to the storage's own URL."""

    #: The file's size when a range beyond it was asked (416 names it).
    unsatisfiable_size: int | None = None

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("X-Content-Type-Options", "nosniff")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 416 and self.unsatisfiable_size is not None:
            self.set_header("Content-Range", f"bytes */{self.unsatisfiable_size}")
        super().write_error(status_code, **kwargs)

    async def send(self, media: dict[str, Any], variant: str, cache: str,
                   ttl_left: int | None = None) -> None:
        """``ttl_left``: seconds the signed URL still works; a presigned URL must not
        outlive it (a URL kpay refuses after its expiry must not go on working at S3)."""
        storage = self.kpay.media.storage
        key = f"{media['_id']}/{variant}"
        if storage.redirects:
            ttl = self.kpay.settings.media.s3_presign_seconds
            if ttl_left is not None:
                ttl = max(1, min(ttl, ttl_left))
            url = await storage.presigned_url(key, media["content_type"], ttl)
            # A public image's redirect may be cached while its target still works; a
            # paid file's never (each request is checked).
            public = cache.startswith("public")
            self.set_header("Cache-Control",
                            f"public, max-age={ttl // 2}" if public else "private, no-store")
            self.redirect(url, status=302)
            return
        size = media["files"][variant]
        try:
            wanted = parse_range(self.request.headers.get("Range"), size)
        except Unsatisfiable:
            self.unsatisfiable_size = size
            raise ApiError(f"the range lies beyond the file's {size} bytes",
                           code="range_not_satisfiable", status=416, size=size) from None
        start, end = wanted if wanted is not None else (0, size - 1)
        self.set_header("Content-Type", media["content_type"])
        self.set_header("Content-Disposition", "inline")
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Cache-Control", cache)
        if wanted is not None:
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.set_header("Content-Length", str(end - start + 1))
        if self.request.method == "HEAD" or size == 0:
            self.finish()
            return
        try:
            async for block in storage.read(key, start, end):
                self.write(block)
                await self.flush()
        except tornado.iostream.StreamClosedError:
            return  # the player moved on (a seek, a closed page): not an error
        self.finish()


class PublicMediaHandler(MediaBody):
    @api("A public image (cover, avatar) in one size: thumb, card or full", auth=False,
         media_type="image/jpeg")
    async def get(self, media_id: str, variant: str) -> None:
        media = await self.kpay.media.find(media_id)
        if media is None or not is_public(media) or variant not in IMAGE_VARIANTS:
            raise NotFound("no such image", code="media_not_found")
        if media["status"] != "ready":
            raise gone()
        cache = f"public, max-age={self.kpay.settings.media.public_cache_seconds}"
        await self.send(media, variant, cache)


class SignedMediaHandler(MediaBody):
    @api("Paid media at a URL kpay signed (range requests; S3: a redirect)", auth=False,
         media_type="*/*", query=("token",))
    async def get(self) -> None:
        service = self.kpay.media
        grant = service.signer.verify(self.get_query_argument("token", ""))
        now = self.kpay.clock.time()
        if grant.expires < now:
            raise Forbidden("this media URL has expired; reload the page",
                            code="url_expired")
        # A URL given away still names its user: one opened with someone else's token
        # is refused (the page of that user gets its own URL).
        caller = self.token_claims.user.id if self.token_claims is not None else None
        if caller is not None and caller != grant.user_id:
            raise Forbidden("this media URL was made for another user", code="wrong_user")
        media = await service.find(grant.media_id)
        if media is None:
            raise NotFound("no such media", code="media_not_found")
        if media["status"] != "ready":
            raise gone()
        if not await self.kpay.access.allowed(grant.user_id, grant.action, grant.resource):
            raise Forbidden("no access to this media", code="no_access")
        remaining = max(0, int(grant.expires - now))
        variant = "full" if media["kind"] == "image" else "original"
        await self.send(media, variant, f"private, max-age={remaining}", remaining)
