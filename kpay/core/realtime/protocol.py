"""Socket frames: JSON text encoded once, WebSocket-framed once per publication."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def websocket_text_frame(payload: bytes) -> bytes:
    """An unmasked, final, uncompressed text frame (RFC 6455 5.2), as a server sends.

    Built once per publication so every subscriber's socket gets the same bytes.
    """
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


@dataclass
class Publication:
    """One event on one channel. ``seq`` grows by one per channel publication."""

    channel: str
    seq: int
    type: str
    data: Any
    time: float
    _frame: bytes | None = field(default=None, repr=False)

    def message(self) -> dict[str, Any]:
        return {"op": "event", "ch": self.channel, "seq": self.seq, "type": self.type,
                "data": self.data}

    @property
    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = websocket_text_frame(dumps(self.message()).encode())
        return self._frame


def reply(ref: Any, ok: bool = True, **fields: Any) -> dict[str, Any]:
    return {"op": "reply", "ref": ref, "ok": ok, **fields}


def error_reply(ref: Any, code: str, message: str, **details: Any) -> dict[str, Any]:
    return reply(ref, False, error={"code": code, "message": message, **details})


def split_channel(channel: Any) -> tuple[str, str] | None:
    """``"room:r1"`` -> ``("room", "r1")``; None when it is not a channel name."""
    if not isinstance(channel, str) or len(channel) > 200:
        return None
    prefix, sep, ident = channel.partition(":")
    if not sep or not prefix or not ident:
        return None
    return prefix, ident
