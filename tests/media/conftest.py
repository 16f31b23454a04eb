"""Helpers of the media tests: files made on the spot, and an upload client."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest
from PIL import Image

from kpay.testclients import UserClient


def jpeg_with_exif(width: int = 1200, height: int = 800, noisy: bool = False) -> bytes:
    """A JPEG with an EXIF block naming a camera and a GPS position (``noisy``: random
    pixels, so it stays large)."""
    if noisy:
        pixels = random.Random(width * height).randbytes(width * height * 3)
        image = Image.frombytes("RGB", (width, height), pixels)
    else:
        image = Image.new("RGB", (width, height), (200, 60, 40))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0110] = "Model X"  # Model
    exif[0x8825] = {1: "N", 2: (39.0, 54.0, 27.0)}  # GPS
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def png_bytes(width: int = 300, height: int = 200) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 128, 255, 128)).save(out, "PNG")
    return out.getvalue()


def mp3_bytes(frames: int = 100) -> bytes:
    """Silent MPEG-1 layer III frames, 128 kbit/s at 44.1 kHz: 417 bytes and 26.12 ms
    each (100 frames: 2.612 s)."""
    return (b"\xff\xfb\x90\x64" + b"\0" * 413) * frames


def webm_bytes(padding: int = 3000) -> bytes:
    """The EBML header of a WebM file (DocType "webm"), as MediaRecorder starts one."""
    header = (bytes.fromhex("1A45DFA3") + b"\x9f\x42\x86\x81\x01\x42\xf7\x81\x01"
              b"\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm\x42\x87\x81\x04"
              b"\x42\x85\x81\x02")
    return header + b"\0" * padding


async def start(user: UserClient, data: bytes, kind: str = "image", purpose: str = "cover",
                size: int | None = None) -> tuple[int, Any]:
    return await user.post("/api/v1/media/uploads",
                           {"kind": kind, "purpose": purpose,
                            "size": len(data) if size is None else size,
                            "filename": "file.bin"})


async def put(user: UserClient, upload_id: str, data: bytes, start_at: int, total: int,
              ) -> tuple[int, Any]:
    end = start_at + len(data) - 1
    return await user.api.request(
        "PUT", f"/api/v1/media/uploads/{upload_id}", raw=data, token=user.token,
        headers={"Content-Range": f"bytes {start_at}-{end}/{total}",
                 "Content-Type": "application/octet-stream"})


async def upload(user: UserClient, data: bytes, kind: str = "image",
                 purpose: str = "cover") -> dict[str, Any]:
    """Upload ``data`` in the server's chunk size; the MEDIA it became."""
    status, body = await start(user, data, kind, purpose)
    assert status == 201, body
    upload_id, chunk = body["upload"]["id"], body["upload"]["chunk_size"]
    result: Any = None
    for offset in range(0, len(data), chunk):
        status, result = await put(user, upload_id, data[offset:offset + chunk], offset,
                                   len(data))
        assert status == 200, result
    assert "media" in result, result
    return result["media"]


async def fetch(user: UserClient | None, url: str, headers: dict[str, str] | None = None,
                api: Any = None) -> Any:
    """GET a media URL (path) without following redirects: the raw response."""

    client = api or user.api
    sent = dict(headers or {})
    return await client.http.fetch(client.base + url, raise_error=False,
                                   follow_redirects=False, headers=sent)


@pytest.fixture
def kpay_overrides(tmp_path: Any) -> dict[str, dict[str, Any]]:
    # Small chunks, so a few hundred KB make several.
    return {"media": {"chunk_bytes": 65536, "path": str(tmp_path / "media")}}
