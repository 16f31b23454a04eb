"""Media for tests (plugins' too): small real files made with the standard library, and
an upload through the media API in chunks, as a page does it (docs/media.md)."""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib
from typing import Any

from kpay.testing import ApiClient


def wav_bytes(seconds: float = 6.0, rate: int = 8000) -> bytes:
    """A mono 16-bit WAV of a 440 Hz tone, ``seconds`` long."""
    frames = int(seconds * rate)
    samples = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
                       for n in range(frames))
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(samples)
    return out.getvalue()


def png_bytes(width: int = 320, height: int = 180, rgb: tuple[int, int, int] = (5, 112, 63),
              ) -> bytes:
    """A plain-coloured RGB PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


async def upload(api: ApiClient, token: str, kind: str, purpose: str, data: bytes,
                 filename: str = "file") -> dict[str, Any]:
    """Upload ``data`` in chunks; the MEDIA document."""
    status, body = await api.post("/api/v1/media/uploads", {
        "kind": kind, "purpose": purpose, "size": len(data), "filename": filename}, token)
    assert status == 201, body
    upload_id, step = body["upload"]["id"], body["upload"]["chunk_size"]
    offset = 0
    while offset < len(data):
        end = min(offset + step, len(data))
        status, body = await api.request(
            "PUT", f"/api/v1/media/uploads/{upload_id}", token=token, raw=data[offset:end],
            headers={"Content-Range": f"bytes {offset}-{end - 1}/{len(data)}",
                     "Content-Type": "application/octet-stream"})
        assert status == 200, body
        offset = end
    return body["media"]
