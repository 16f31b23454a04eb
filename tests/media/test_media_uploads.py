"""Uploads in chunks: images become variants without metadata, content decides the type,
sizes and quotas hold, a dropped chunk is resumed."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from kpay.testmedia import wav_bytes
from tests.media.conftest import fetch, jpeg_with_exif, png_bytes, put, start, upload


@pytest.mark.gen_test
async def test_image_becomes_variants_without_exif(consultant, kpay_app):
    data = jpeg_with_exif(1200, 800)
    media = await upload(consultant, data)
    assert media["kind"] == "image" and media["content_type"] == "image/jpeg"
    assert (media["width"], media["height"]) == (1200, 800)
    assert media["url"].endswith(f"/media/{media['id']}/card")
    widths = {}
    for variant in ("thumb", "card", "full"):
        response = await fetch(consultant, f"/media/{media['id']}/{variant}")
        assert response.code == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Disposition"] == "inline"
        assert "max-age=86400" in response.headers["Cache-Control"]
        image = Image.open(io.BytesIO(response.body))
        widths[variant] = image.width
        assert not image.getexif(), f"{variant} kept EXIF"
        assert b"SecretCam" not in response.body
    assert widths == {"thumb": 160, "card": 750, "full": 1200}


@pytest.mark.gen_test
async def test_png_with_alpha_is_flattened(consultant):
    media = await upload(consultant, png_bytes(), purpose="avatar")
    response = await fetch(consultant, f"/media/{media['id']}/thumb")
    assert Image.open(io.BytesIO(response.body)).mode == "RGB"


@pytest.mark.gen_test
async def test_a_jpg_that_is_not_an_image_is_refused(consultant, kpay_app):
    data = b"<html><script>alert(1)</script></html>" + b" " * 5000
    status, body = await start(consultant, data)
    upload_id = body["upload"]["id"]
    status, body = await put(consultant, upload_id, data[:65536], 0, len(data))
    assert status == 400 and body["error"]["code"] == "invalid_media"
    # The upload is closed and its reservation given back.
    status, body = await consultant.get(f"/api/v1/media/uploads/{upload_id}")
    assert body["upload"]["status"] == "failed"
    assert await kpay_app.media.quotas.used("carol") == 0


@pytest.mark.gen_test
async def test_audio_claimed_as_image_is_refused(consultant):
    data = wav_bytes(0.5)
    status, body = await start(consultant, data, kind="image")
    status, body = await put(consultant, body["upload"]["id"], data, 0, len(data))
    assert status == 400 and body["error"]["code"] == "invalid_media"


@pytest.mark.gen_test
async def test_wav_duration_is_read(consultant):
    media = await upload(consultant, wav_bytes(2.5), kind="audio", purpose="lesson")
    assert media["content_type"] == "audio/wav"
    assert media["duration_seconds"] == pytest.approx(2.5, abs=0.01)
    assert "url" not in media


@pytest.mark.gen_test
async def test_oversized_upload_refused_at_start(consultant, kpay_app):
    status, body = await start(consultant, b"", size=10 * 1_048_576 + 1)
    assert status == 413 and body["error"]["code"] == "media_too_large"
    assert body["error"]["limit"] == 10 * 1_048_576


@pytest.mark.gen_test
async def test_chunk_larger_than_chunk_size_refused(consultant):
    data = jpeg_with_exif(2000, 2000) + b"\0" * 70000
    status, body = await start(consultant, data)
    status, body = await put(consultant, body["upload"]["id"], data[:65537], 0, len(data))
    assert status == 413


@pytest.mark.gen_test
async def test_chunked_upload_resumes_after_a_dropped_chunk(consultant):
    data = jpeg_with_exif(600, 600, noisy=True)
    assert len(data) > 3 * 65536
    status, body = await start(consultant, data)
    upload_id, chunk = body["upload"]["id"], body["upload"]["chunk_size"]
    status, body = await put(consultant, upload_id, data[:chunk], 0, len(data))
    assert body["upload"]["offset"] == chunk
    # The second chunk "drops": the client skips ahead, the server says where it is.
    status, body = await put(consultant, upload_id, data[2 * chunk:3 * chunk], 2 * chunk,
                             len(data))
    assert status == 409 and body["error"]["code"] == "offset_mismatch"
    assert body["error"]["offset"] == chunk
    status, body = await consultant.get(f"/api/v1/media/uploads/{upload_id}")
    offset = body["upload"]["offset"]
    while True:
        status, body = await put(consultant, upload_id, data[offset:offset + chunk], offset,
                                 len(data))
        assert status == 200, body
        if "media" in body:
            break
        offset = body["upload"]["offset"]
    assert body["media"]["width"] == 600
    # The last chunk sent again answers the same media (its answer may have been lost).
    status, again = await put(consultant, upload_id, data[offset:], offset, len(data))
    assert again["media"]["id"] == body["media"]["id"]


@pytest.mark.gen_test
async def test_quota_exceeded(consultant, kpay_app, io_loop):
    kpay_app.media.settings = kpay_app.media.settings.model_copy(
        update={"quota_consultant_bytes": 100_000})
    kpay_app.media.quotas.settings = kpay_app.media.settings
    status, body = await start(consultant, b"", size=100_001)
    assert status == 413 and body["error"]["code"] == "quota_exceeded"
    assert body["error"]["quota"] == 100_000 and body["error"]["used"] == 0
    status, body = await start(consultant, b"", size=60_000)
    assert status == 201
    status, body = await start(consultant, b"", size=60_000)
    assert status == 413 and body["error"]["used"] == 60_000
    status, body = await consultant.get("/api/v1/media/usage")
    assert body == {"used": 60_000, "quota": 100_000}


@pytest.mark.gen_test
async def test_exif_orientation_is_applied_before_it_is_dropped(consultant):
    image = Image.new("RGB", (400, 200), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to show
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    media = await upload(consultant, out.getvalue())
    assert (media["width"], media["height"]) == (200, 400)


@pytest.mark.gen_test
async def test_video_kept_as_uploaded(consultant, kpay_app):
    # An MP4 box header ("ftyp isom") and padding: sniffed as video/mp4; its duration
    # cannot be read, which video allows.
    data = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 200_000
    media = await upload(consultant, data, kind="video", purpose="lesson")
    assert media["content_type"] == "video/mp4" and media["size"] == len(data)
    assert "duration_seconds" not in media and "url" not in media
    url = kpay_app.media.signed_url(media["id"], user_id="carol", resource="course:none")
    assert "/media/s?token=" in url
