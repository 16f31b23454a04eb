"""The bounds of uploads: kinds and their formats, pixel caps, chunk body limits, upload
rate and open uploads, quotas at completion, expiry of unfinished uploads."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from typing import Any

import pytest
from PIL import Image

from kpay.core.media import processing
from kpay.core.media.service import PROCESSING_SLOTS
from tests.media.conftest import (
    fetch,
    jpeg_with_exif,
    mp3_bytes,
    png_bytes,
    put,
    start,
    upload,
    webm_bytes,
)


@pytest.mark.gen_test
async def test_mp3_duration_and_webm_without_one(consultant):
    mp3 = await upload(consultant, mp3_bytes(100), kind="audio", purpose="lesson")
    assert mp3["content_type"] == "audio/mpeg"
    assert mp3["duration_seconds"] == pytest.approx(2.612, abs=0.01)
    # A browser recording: WebM has no duration the server can read; it is absent.
    webm = await upload(consultant, webm_bytes(), kind="audio", purpose="answer")
    assert webm["content_type"] == "audio/webm"
    assert "duration_seconds" not in webm


@pytest.mark.gen_test
async def test_broken_mp3_refused(consultant):
    data = b"\xff\xfb\x90\x64" + b"\x13" * 3000
    status, body = await start(consultant, data, kind="audio", purpose="lesson")
    status, body = await put(consultant, body["upload"]["id"], data, 0, len(data))
    assert status == 400 and body["error"]["code"] == "invalid_media"


@pytest.mark.gen_test
async def test_audio_is_not_served_publicly(consultant):
    media = await upload(consultant, mp3_bytes(20), kind="audio", purpose="lesson")
    response = await fetch(consultant, f"/media/{media['id']}/original")
    assert response.code == 404
    response = await fetch(consultant, f"/media/{media['id']}/card")
    assert response.code == 404


@pytest.mark.gen_test
async def test_an_upload_is_its_owners_only(consultant, student):
    status, body = await start(consultant, b"", size=1000)
    upload_id = body["upload"]["id"]
    status, body = await student.get(f"/api/v1/media/uploads/{upload_id}")
    assert status == 404 and body["error"]["code"] == "upload_not_found"
    status, body = await put(student, upload_id, b"x" * 1000, 0, 1000)
    assert status == 404


class TestPixelCap:
    @pytest.fixture
    def kpay_overrides(self, tmp_path: Any) -> dict[str, dict[str, Any]]:
        return {"media": {"chunk_bytes": 65536, "path": str(tmp_path / "media"),
                          "max_image_pixels": 1_000_000}}

    @pytest.mark.gen_test
    async def test_too_many_pixels_refused_before_decoding(self, consultant):
        out = io.BytesIO()
        Image.new("L", (2000, 1000), 0).save(out, "PNG")  # small file, 2 Mpx
        data = out.getvalue()
        status, body = await start(consultant, data)
        status, body = await put(consultant, body["upload"]["id"], data, 0, len(data))
        assert status == 400 and body["error"]["code"] == "invalid_media"
        assert body["error"]["max_pixels"] == 1_000_000


class TestLargeChunks:
    @pytest.fixture
    def kpay_overrides(self, tmp_path: Any) -> dict[str, dict[str, Any]]:
        # Chunks larger than the JSON body limit: they have their own.
        return {"media": {"chunk_bytes": 2 * 1_048_576, "path": str(tmp_path / "media")},
                "server": {"max_body_bytes": 65536}}

    @pytest.mark.gen_test
    async def test_chunk_body_limit_is_its_own(self, consultant):
        data = jpeg_with_exif(900, 900, noisy=True)
        assert 65536 < len(data) < 2 * 1_048_576
        media = await upload(consultant, data)
        assert media["width"] == 900
        # Other routes keep the JSON limit.
        status, body = await consultant.post("/api/v1/media/uploads",
                                             {"kind": "image", "purpose": "cover",
                                              "size": 10, "filename": "x" * 70000})
        assert status == 413 and body["error"]["code"] == "payload_too_large"


class TestUploadRates:
    @pytest.fixture
    def kpay_overrides(self, tmp_path: Any) -> dict[str, dict[str, Any]]:
        return {"media": {"path": str(tmp_path / "media"), "uploads_per_hour": 3,
                          "max_open_uploads": 2}}

    @pytest.mark.gen_test
    async def test_open_uploads_and_starts_per_hour(self, consultant, clock, kpay_app):
        first = (await start(consultant, b"", size=100))[1]["upload"]
        await start(consultant, b"", size=100)
        status, body = await start(consultant, b"", size=100)
        assert status == 409 and body["error"]["code"] == "too_many_open"
        assert body["error"]["what"] == "media_uploads"
        # One finished frees a place; the fourth start within the hour is too many.
        data = png_bytes(10, 10)
        status, body = await start(consultant, data)
        assert status == 409
        from kpay.core.media.uploads import fail

        await fail(kpay_app.media, {"_id": first["id"], "user_id": "carol", "size": 100},
                   "test")
        status, body = await start(consultant, data)
        assert status == 201
        await fail(kpay_app.media, {"_id": body["upload"]["id"], "user_id": "carol",
                                    "size": len(data)}, "test")
        status, body = await start(consultant, data)
        assert status == 429 and body["error"]["code"] == "rate_limited"
        assert 3590 <= body["error"]["retry_after"] <= 3600
        await clock.advance(3601)
        status, body = await start(consultant, data)
        assert status == 201


class TestQuotaAtCompletion:
    @pytest.fixture
    def kpay_overrides(self, tmp_path: Any) -> dict[str, dict[str, Any]]:
        return {"media": {"path": str(tmp_path / "media"), "quota_consultant_bytes": 1500}}

    @pytest.mark.gen_test
    async def test_real_size_past_the_quota_is_refused(self, consultant, kpay_app):
        data = png_bytes(300, 200)  # a small PNG whose JPEG variants are larger
        assert len(data) < 1500
        status, body = await start(consultant, data)
        assert status == 201
        status, body = await put(consultant, body["upload"]["id"], data, 0, len(data))
        assert status == 409 and body["error"]["code"] == "quota_exceeded"
        assert body["error"]["quota"] == 1500
        assert await kpay_app.media.quotas.used("carol") == 0
        assert await kpay_app.media.collection.count_documents({}) == 0


@pytest.mark.gen_test
async def test_unfinished_upload_expires_with_its_chunks(consultant, kpay_app, clock):
    data = jpeg_with_exif(600, 600, noisy=True)
    status, body = await start(consultant, data)
    upload_id = body["upload"]["id"]
    await put(consultant, upload_id, data[:65536], 0, len(data))
    staged = kpay_app.media.root / "staging" / upload_id
    assert staged.exists()
    assert await kpay_app.media.quotas.used("carol") == len(data)
    await clock.advance(23 * 3600)
    assert staged.exists()
    await clock.advance(3600 + 1)
    assert not staged.exists()
    status, body = await consultant.get(f"/api/v1/media/uploads/{upload_id}")
    assert body["upload"]["status"] == "expired"
    assert await kpay_app.media.quotas.used("carol") == 0
    status, body = await put(consultant, upload_id, data[65536:131072], 65536, len(data))
    assert status == 409 and body["error"]["code"] == "upload_closed"


def test_s3_storage_needs_a_bucket():
    from kpay.core.config import MediaSettings
    from kpay.core.errors import ConfigError
    from kpay.core.media.storage import make_storage

    with pytest.raises(ConfigError, match="s3_bucket"):
        make_storage(MediaSettings(storage="s3"), "var")


@pytest.mark.gen_test(timeout=30)
async def test_files_are_processed_a_few_at_a_time(consultant, monkeypatch):
    # A 170 KB PNG of 40 Mpx decodes to about 500 MB for 2 s of CPU: uploads completing
    # at once take turns, so they can neither fill the memory nor take every thread
    # (local media is read in the same threads).
    real, running, most, guard = processing.process_media, 0, 0, threading.Lock()

    def counted(*args: Any) -> Any:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.2)
            return real(*args)
        finally:
            with guard:
                running -= 1

    monkeypatch.setattr(processing, "process_media", counted)
    done = await asyncio.gather(*(upload(consultant, png_bytes()) for _ in range(5)))
    assert len(done) == 5 and most <= PROCESSING_SLOTS < 5


@pytest.mark.gen_test
async def test_a_phone_jpeg_with_a_second_picture_is_an_image(consultant):
    # Phones write JPEGs with an MPF block and a second picture (a depth or HDR gain map);
    # Pillow reads them as "MPO". The first picture is the photo.
    photo, extra = Image.new("RGB", (900, 600), (200, 0, 0)), Image.new("RGB", (900, 600))
    out = io.BytesIO()
    photo.save(out, "MPO", save_all=True, append_images=[extra])
    media = await upload(consultant, out.getvalue())
    assert (media["width"], media["height"]) == (900, 600)
    response = await fetch(consultant, f"/media/{media['id']}/card")
    assert Image.open(io.BytesIO(response.body)).getpixel((10, 10))[0] > 150  # the red one
