"""Resumable uploads in chunks (docs/media.md, "Uploading").

An upload is started with its kind, purpose and size (checked against the kind's limit
and the user's quota), then sent in chunks of ``chunk_size`` bytes, each at the offset
the server has (``Content-Range``). Chunks are staged in a file on this node's disk;
the first one is sniffed so a file that is not what it claims is refused before the
rest is sent. The last chunk completes it: the file is checked and processed
(kpay/core/media/processing.py), moved to the storage backend, and becomes media.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument

from kpay.core.auth import User
from kpay.core.errors import ApiError, BadRequest, Conflict, NotFound, RateLimited
from kpay.core.media import processing
from kpay.core.media.quota import quota_for
from kpay.core.media.service import UPLOADS, new_media_id
from kpay.core.ratelimit import enforce_cap

if TYPE_CHECKING:
    from kpay.core.media.service import MediaService

log = logging.getLogger("kpay.media")

UPLOAD_ID = re.compile(r"up[0-9a-f]{22}")
CONTENT_RANGE = re.compile(r"bytes (\d{1,15})-(\d{1,15})/(\d{1,15})")
OPEN = ("open", "processing")


def size_limit(service: MediaService, kind: str) -> int:
    settings = service.settings
    return {"image": settings.max_image_bytes, "audio": settings.max_audio_bytes,
            "video": settings.max_video_bytes}[kind]


def public_upload(service: MediaService, upload: dict[str, Any]) -> dict[str, Any]:
    return {"id": upload["_id"], "offset": upload["offset"], "size": upload["size"],
            "chunk_size": service.chunk_size, "kind": upload["kind"],
            "purpose": upload["purpose"], "status": upload["status"],
            "expires_at": upload["expires_at"]}


def staging_path(service: MediaService, upload_id: str) -> Path:
    return service.root / "staging" / upload_id


async def start_upload(service: MediaService, user: User, kind: str, purpose: str, size: int,
                       filename: str | None) -> dict[str, Any]:
    """Open an upload; 413 ``media_too_large`` over the kind's limit, 413
    ``quota_exceeded`` past the user's quota, 429 past ``uploads_per_hour``."""
    settings = service.settings
    limit = size_limit(service, kind)
    if size > limit:
        raise ApiError(f"a {kind} may be at most {limit} bytes", code="media_too_large",
                       status=413, limit=limit, size=size)
    uploads = service.app.store[UPLOADS]
    now = service.app.clock.now()
    started = await uploads.count_documents(
        {"user_id": user.id, "created_at": {"$gt": now - timedelta(hours=1)}},
        limit=settings.uploads_per_hour)
    if started >= settings.uploads_per_hour:
        # Free again when the oldest start of the hour leaves it.
        window = uploads.find({"user_id": user.id, "created_at": {
            "$gt": now - timedelta(hours=1)}}).sort("created_at", 1).limit(1)
        oldest = [u["created_at"] async for u in window]
        wait = (oldest[0] + timedelta(hours=1) - now).total_seconds() if oldest else 60
        raise RateLimited(f"at most {settings.uploads_per_hour} uploads an hour",
                          retry_after=max(1, math.ceil(wait)))
    await enforce_cap(uploads, {"user_id": user.id, "status": {"$in": list(OPEN)}},
                      settings.max_open_uploads, "media_uploads",
                      "too many uploads in progress; finish or wait for one")
    await service.quotas.take(user.id, size, quota_for(settings, user.role))
    upload = {"_id": "up" + uuid.uuid4().hex[:22], "user_id": user.id, "kind": kind,
              "purpose": purpose, "size": size, "filename": (filename or "")[:200],
              "offset": 0, "status": "open", "refused": 0, "created_at": now,
              "expires_at": now + service.upload_expiry()}
    try:
        await uploads.insert_one(upload)
    except BaseException:
        await service.quotas.give_back(user.id, size)
        raise
    return public_upload(service, upload)


async def find_upload(service: MediaService, user: User, upload_id: str) -> dict[str, Any]:
    upload = None
    if UPLOAD_ID.fullmatch(upload_id):
        upload = await service.app.store[UPLOADS].find_one({"_id": upload_id,
                                                             "user_id": user.id})
    if upload is None:
        raise NotFound("no such upload", code="upload_not_found")
    return upload


def parse_content_range(header: str, size: int) -> tuple[int, int]:
    """``(start, end)`` (inclusive) from ``bytes <start>-<end>/<total>``; 400
    ``invalid_range`` unless total is the declared size and the range lies within."""
    match = CONTENT_RANGE.fullmatch(header.strip())
    if match is None:
        raise BadRequest("Content-Range must be 'bytes <start>-<end>/<total>'",
                         code="invalid_range")
    start, end, total = (int(g) for g in match.groups())
    if total != size or start > end or end >= size:
        raise BadRequest(f"the range must lie within the declared size {size}",
                         code="invalid_range", size=size)
    return start, end


def locks(service: MediaService) -> dict[str, asyncio.Lock]:
    return service.app.plugin_state("media.upload_locks", dict)


async def put_chunk(service: MediaService, user: User, upload_id: str, content_range: str,
                    data: bytes) -> dict[str, Any]:
    """Store one chunk. Returns ``{"upload": ...}``, or ``{"media": MEDIA}`` once the
    last chunk completed it (again when that chunk is sent twice)."""
    upload = await find_upload(service, user, upload_id)
    if upload["status"] == "done":
        media = await service.collection.find_one({"_id": upload["media_id"]})
        if media is not None:
            return {"media": service.public(media)}
    if upload["status"] != "open" or upload["expires_at"] <= service.app.clock.now():
        raise Conflict("this upload is no longer open; start a new one",
                       code="upload_closed", status_of_upload=upload["status"])
    try:
        start, end = parse_content_range(content_range, upload["size"])
        if len(data) != end - start + 1:
            raise BadRequest("the body's length does not match Content-Range",
                             code="invalid_range")
        chunk = service.chunk_size
        if len(data) > chunk:
            raise ApiError(f"a chunk may be at most {chunk} bytes",
                           code="payload_too_large", status=413, limit=chunk)
        if len(data) != chunk and end + 1 != upload["size"]:
            # Whole chunks but the last: the first one is what the type is read from.
            raise BadRequest(f"every chunk but the last is {chunk} bytes",
                             code="invalid_range", chunk_size=chunk)
        if start != upload["offset"]:
            raise Conflict(f"the upload continues at byte {upload['offset']}",
                           code="offset_mismatch", offset=upload["offset"])
    except ApiError:
        await refused(service, upload)
        raise
    # One chunk of an upload at a time on this node: a retry racing its original must
    # not write into the staged file while the other moves the offset.
    table = locks(service)
    lock = table.setdefault(upload_id, asyncio.Lock())
    try:
        async with lock:
            current = await service.app.store[UPLOADS].find_one({"_id": upload_id})
            if current is None or current["offset"] != start or current["status"] != "open":
                if current is not None and current["status"] == "done":
                    return await put_chunk(service, user, upload_id, content_range, data)
                offset = (current or upload)["offset"]
                raise Conflict(f"the upload continues at byte {offset}",
                               code="offset_mismatch", offset=offset)
            return await write_chunk(service, current, start, end, data)
    finally:
        if not lock.locked():
            table.pop(upload_id, None)


async def refused(service: MediaService, upload: dict[str, Any]) -> None:
    """Count a refused chunk; past ``max_refused_chunks`` the upload is given up."""
    uploads = service.app.store[UPLOADS]
    counted = await uploads.find_one_and_update(
        {"_id": upload["_id"], "status": "open"}, {"$inc": {"refused": 1}},
        return_document=ReturnDocument.AFTER)
    if counted is not None and counted["refused"] > service.settings.max_refused_chunks:
        await fail(service, counted, "too many refused chunks")


async def write_chunk(service: MediaService, upload: dict[str, Any], start: int, end: int,
                      data: bytes) -> dict[str, Any]:
    uploads = service.app.store[UPLOADS]
    if start == 0:
        try:
            upload["mime"] = processing.sniff(data, upload["kind"])
        except ApiError:
            await fail(service, upload, "not the kind it claims")
            raise
    path = staging_path(service, upload["_id"])
    await asyncio.to_thread(write_at, path, start, data)
    last = end + 1 == upload["size"]
    changes: dict[str, Any] = {"offset": end + 1}
    if start == 0:
        changes["mime"] = upload["mime"]
    if last:
        changes["status"] = "processing"
    moved = await uploads.find_one_and_update(
        {"_id": upload["_id"], "offset": start, "status": "open"}, {"$set": changes},
        return_document=ReturnDocument.AFTER)
    if moved is None:
        current = await uploads.find_one({"_id": upload["_id"]}) or upload
        raise Conflict(f"the upload continues at byte {current['offset']}",
                       code="offset_mismatch", offset=current["offset"])
    if not last:
        return {"upload": public_upload(service, moved)}
    return {"media": await complete(service, moved)}


def write_at(path: Path, start: int, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "r+b" if start and path.exists() else "wb") as handle:
        handle.seek(start)
        handle.write(data)
        handle.truncate()


async def complete(service: MediaService, upload: dict[str, Any]) -> dict[str, Any]:
    """Check and process the whole file, store what is kept, and make it media."""
    source = staging_path(service, upload["_id"])
    work = service.root / "staging" / (upload["_id"] + ".out")
    try:
        async with service.processing:  # a few at a time (service.PROCESSING_SLOTS)
            processed = await asyncio.to_thread(
                processing.process_media, source, work, upload["kind"],
                upload.get("mime", ""), service.settings.max_image_pixels)
        sizes = await asyncio.to_thread(processed.sizes)
        size = sum(sizes.values())
        standing = await service.app.users.standing(upload["user_id"])
        quota = quota_for(service.settings, standing.role if standing else "student")
        # The reservation was the declared size; the kept files may be larger or smaller.
        change = size - upload["size"]
        await service.quotas.take(upload["user_id"], change, quota, status=409)
        media_id = new_media_id()
        try:
            for variant, path in processed.files.items():
                await service.storage.put_file(f"{media_id}/{variant}", path,
                                               processed.content_type)
            media = {"_id": media_id, "owner_id": upload["user_id"], "kind": upload["kind"],
                     "purpose": upload["purpose"], "content_type": processed.content_type,
                     "size": size, "files": sizes,
                     "width": processed.width, "height": processed.height,
                     "duration_seconds": processed.duration_seconds,
                     "filename": upload.get("filename", ""), "storage": service.storage.name,
                     "status": "ready", "created_at": service.app.clock.now(),
                     "upload_id": upload["_id"]}
            await service.collection.insert_one(media)
        except BaseException:
            await service.quotas.give_back(upload["user_id"], change)
            await service.storage.delete_prefix(f"{media_id}/")
            raise
        await service.app.store[UPLOADS].update_one(
            {"_id": upload["_id"]}, {"$set": {"status": "done", "media_id": media_id}})
        return service.public(media)
    except ApiError:
        await fail(service, upload, "refused at completion")
        raise
    except BaseException:
        await fail(service, upload, "failed at completion")
        raise
    finally:
        await asyncio.to_thread(remove_staged, source, work)


def remove_staged(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


async def fail(service: MediaService, upload: dict[str, Any], why: str,
               status: str = "failed") -> None:
    """Close an upload, drop its chunks and give its reservation back (once)."""
    closed = await service.app.store[UPLOADS].update_one(
        {"_id": upload["_id"], "status": {"$in": list(OPEN)}},
        {"$set": {"status": status, "closed_because": why}})
    if closed.modified_count == 1:
        await service.quotas.give_back(upload["user_id"], upload["size"])
    await asyncio.to_thread(remove_staged, staging_path(service, upload["_id"]))


async def expire_uploads(service: MediaService) -> int:
    """Periodic job: drop uploads not finished in ``upload_ttl_hours``, with their
    chunks and their quota reservations. Returns how many."""
    now = service.app.clock.now()
    count = 0
    cursor = service.app.store[UPLOADS].find(
        {"status": {"$in": list(OPEN)}, "expires_at": {"$lte": now}}).limit(1000)
    async for upload in cursor:
        async with service.app.attention.isolate("media.expire_uploads",
                                                 f"upload:{upload['_id']}"):
            await fail(service, upload, "expired", status="expired")
            count += 1
    return count

