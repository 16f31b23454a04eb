"""The media routes (docs/api.md, "Media"; the protocol in docs/media.md)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from kpay.core.media import uploads
from kpay.core.media.quota import quota_for
from kpay.core.media.serving import PublicMediaHandler, SignedMediaHandler
from kpay.core.money.admin_routes import stripped_reason
from kpay.core.web import BaseHandler, Route, api

if TYPE_CHECKING:
    from kpay.core.app import KPay

MAX_REASON = 500


class UploadStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["image", "audio", "video"]
    purpose: Literal["cover", "avatar", "slide", "lesson", "answer"]
    size: StrictInt = Field(gt=0, le=2**40, description="bytes of the whole file")
    filename: str | None = Field(None, max_length=200)


class Upload(BaseModel):
    id: str
    offset: int = Field(description="bytes the server has; the next chunk starts here")
    size: int
    chunk_size: int = Field(description="send chunks of this many bytes (the last shorter)")
    kind: str
    purpose: str
    status: Literal["open", "processing", "done", "failed", "expired"]
    expires_at: datetime


class UploadResult(BaseModel):
    upload: Upload


class Media(BaseModel):
    id: str
    kind: Literal["image", "audio", "video"]
    purpose: str
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = Field(
        None, description="audio and MP4 video; absent for WebM recordings")
    url: str | None = Field(None, description="public images (cover, avatar) only")


class ChunkResult(BaseModel):
    """``upload`` after a chunk, or ``media`` once the last chunk completed it."""

    upload: Upload | None = None
    media: Media | None = None


class Takedown(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=MAX_REASON)

    _reason = field_validator("reason")(stripped_reason)


class TakenDown(Media):
    status: Literal["ready", "taken_down"]


class TakedownResult(BaseModel):
    media: TakenDown


class Usage(BaseModel):
    used: int = Field(description="bytes of kept media and uploads in progress")
    quota: int = Field(description="bytes the caller may fill")


class UsageHandler(BaseHandler):
    @api("The caller's storage: bytes used and their quota", response=Usage)
    async def get(self) -> None:
        user = self.require_user()
        service = self.kpay.media
        self.write_json({"used": await service.quotas.used(user.id),
                         "quota": quota_for(service.settings, user.role)})


class UploadsHandler(BaseHandler):
    @api("Start a resumable upload of an image, audio or video (then PUT its chunks)",
         body=UploadStart, response=UploadResult, status=201)
    async def post(self) -> None:
        user = self.require_user()
        asked = self.body(UploadStart)
        upload = await uploads.start_upload(self.kpay.media, user, asked.kind, asked.purpose,
                                            asked.size, asked.filename)
        self.write_json({"upload": upload}, 201)


class UploadHandler(BaseHandler):
    @api("An upload's state: the offset to resume from", response=ChunkResult)
    async def get(self, upload_id: str) -> None:
        user = self.require_user()
        upload = await uploads.find_upload(self.kpay.media, user, upload_id)
        if upload["status"] == "done":
            media = await self.kpay.media.find(upload["media_id"])
            if media is not None:
                self.write_json({"media": self.kpay.media.public(media),
                                 "upload": uploads.public_upload(self.kpay.media, upload)})
                return
        self.write_json({"upload": uploads.public_upload(self.kpay.media, upload)})

    # Not rate limited as writes are: an upload bounds its own chunks (each must start at
    # the offset the server has; refused ones are counted, [media] max_refused_chunks).
    @api("Send one chunk (raw bytes, Content-Range: bytes <start>-<end>/<total>)",
         response=ChunkResult, limit="none", body_media_type="application/octet-stream")
    async def put(self, upload_id: str) -> None:
        user = self.require_user()
        result = await uploads.put_chunk(self.kpay.media, user, upload_id,
                                         self.request.headers.get("Content-Range", ""),
                                         self.request.body)
        self.write_json(result)


class TakedownHandler(BaseHandler):
    @api("Admins: take media down (public and signed URLs stop at once); in the audit log",
         roles=("admin",), body=Takedown, response=TakedownResult)
    async def post(self, media_id: str) -> None:
        admin = self.require_user("admin")
        asked = self.body(Takedown)
        media = await self.kpay.media.takedown(media_id, actor=admin.id, reason=asked.reason,
                                               source=self.request.remote_ip or "")
        self.write_json({"media": media})


def media_routes(app: KPay) -> list[Route]:
    return [
        Route("/api/v1/media/uploads", UploadsHandler, tags=("media",)),
        Route("/api/v1/media/usage", UsageHandler, tags=("media",)),
        Route("/api/v1/media/uploads/{upload_id}", UploadHandler, tags=("media",)),
        Route("/api/v1/admin/media/{media_id}/takedown", TakedownHandler, tags=("admin",)),
        Route("/media/s", SignedMediaHandler, tags=("media",), limit="none"),
        Route("/media/{media_id}/{variant}", PublicMediaHandler, tags=("media",),
              limit="none"),
    ]


#: Request bodies allowed beyond [server] max_body_bytes: the upload chunks.
CHUNK_PATH = r"/api/v1/media/uploads/[^/]+"
