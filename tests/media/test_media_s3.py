"""The S3-compatible backend against moto's S3 server: uploads land in the bucket,
public and signed URLs redirect (after kpay's checks) to presigned URLs that work."""

from __future__ import annotations

import io
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import tornado.httpclient
from PIL import Image

from kpay.testing import make_bucket
from kpay.testmedia import wav_bytes
from tests.media.conftest import fetch, jpeg_with_exif, upload
from tests.media.test_media_signed_urls import VIEWERS, TapePlugin, path_of


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("tape", TapePlugin())]


@pytest.fixture
def kpay_overrides(s3_endpoint: str, tmp_path: Any) -> dict[str, dict[str, Any]]:
    bucket = "kpay-test-" + uuid.uuid4().hex[:12]
    make_bucket(s3_endpoint, bucket)
    return {"media": {"storage": "s3", "s3_endpoint_url": s3_endpoint, "s3_bucket": bucket,
                      "s3_access_key": "test", "s3_secret_key": "test",
                      "chunk_bytes": 65536, "path": str(tmp_path / "media")}}


async def follow(location: str) -> tornado.httpclient.HTTPResponse:
    return await tornado.httpclient.AsyncHTTPClient().fetch(location, raise_error=False)


@pytest.mark.gen_test
async def test_public_image_redirects_to_a_presigned_url(kpay_app, consultant):
    media = await upload(consultant, jpeg_with_exif(900, 600))
    response = await fetch(consultant, f"/media/{media['id']}/card")
    assert response.code == 302
    assert response.headers["Cache-Control"] == "public, max-age=150"
    location = response.headers["Location"]
    assert location.startswith(kpay_app.settings.media.s3_endpoint_url)
    assert "Signature" in location or "X-Amz-Signature" in location
    stored = await follow(location)
    assert stored.code == 200
    assert Image.open(io.BytesIO(stored.body)).width == 750


@pytest.mark.gen_test
async def test_signed_audio_redirects_after_the_access_check(kpay_app, consultant, api):
    VIEWERS.clear()
    VIEWERS["t1"] = {"alice"}
    data = wav_bytes(1.0)
    media = await upload(consultant, data, kind="audio", purpose="lesson")
    alice = await api.as_user("alice", "student")
    url = path_of(kpay_app.media.signed_url(media["id"], user_id="alice", resource="tape:t1"))
    response = await fetch(alice, url)
    assert response.code == 302
    assert response.headers["Cache-Control"] == "private, no-store"
    stored = await follow(response.headers["Location"])
    assert stored.code == 200 and stored.body == data
    assert stored.headers["Content-Type"] == "audio/wav"
    # The presigned URL answers ranges itself.
    part = await tornado.httpclient.AsyncHTTPClient().fetch(
        response.headers["Location"], headers={"Range": "bytes=100-199"}, raise_error=False)
    assert part.code == 206 and part.body == data[100:200]
    # No access: no redirect at all.
    bob = await api.as_user("bob", "student")
    url = path_of(kpay_app.media.signed_url(media["id"], user_id="bob", resource="tape:t1"))
    response = await fetch(bob, url)
    assert response.code == 403 and "Location" not in response.headers


def presigned_seconds(location: str) -> int:
    """How long a presigned URL works: X-Amz-Expires (SigV4) or Expires - now (SigV2)."""
    query = parse_qs(urlsplit(location).query)
    if "X-Amz-Expires" in query:
        return int(query["X-Amz-Expires"][0])
    return int(query["Expires"][0]) - int(time.time())  # S3 judges it on the real clock


@pytest.mark.gen_test
async def test_presigned_url_ends_with_the_signed_url(kpay_app, consultant, api):
    # A kpay URL with 30 s left must not become an S3 URL working for 5 minutes more.
    VIEWERS.clear()
    VIEWERS["t1"] = {"alice"}
    media = await upload(consultant, wav_bytes(1.0), kind="audio", purpose="lesson")
    alice = await api.as_user("alice", "student")
    url = path_of(kpay_app.media.signed_url(media["id"], user_id="alice", resource="tape:t1",
                                            ttl=30))
    response = await fetch(alice, url)
    assert response.code == 302
    assert presigned_seconds(response.headers["Location"]) <= 30
