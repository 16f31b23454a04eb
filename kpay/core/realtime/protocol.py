"""Socket frames: JSON text encoded once, WebSocket-framed once per publication."""

from __future__ import annotations

import json
import struct
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


def event_parts(channel: str, type: str, data: Any) -> tuple[str, str]:
    """The event's JSON text split around its seq: ``head + str(seq) + tail``.

    Lets a broker that assigns seq elsewhere (Redis) splice it in without re-encoding.
    """
    head = '{"op":"event","ch":' + dumps(channel) + ',"seq":'
    tail = ',"type":' + dumps(type) + ',"data":' + dumps(data) + "}"
    return head, tail


class Publication:
    """One event on one channel. ``seq`` grows by one per channel publication.

    The event is encoded to JSON and framed at most once (``frame``), however many
    sockets it is written to. A publication that arrived encoded (from Redis) is
    decoded only if someone reads ``type`` or ``data``.
    """

    __slots__ = ("_data", "_frame", "_payload", "_type", "channel", "seq", "time")

    def __init__(self, channel: str, seq: int, type: str, data: Any, time: float,
                 payload: bytes | None = None) -> None:
        self.channel = channel
        self.seq = seq
        self.time = time
        self._type: str | None = type
        self._data = data
        # The event as JSON, when the caller has already encoded it.
        self._payload = payload
        self._frame: bytes | None = None

    @classmethod
    def encoded(cls, channel: str, seq: int, time: float, payload: bytes) -> Publication:
        """A publication whose event JSON (``{"op":"event",...}``) is already built."""
        publication = cls(channel, seq, "", None, time, payload)
        publication._type = None
        return publication

    def _decode(self) -> None:
        message = json.loads(self.payload)
        self._type, self._data = message["type"], message["data"]

    @property
    def type(self) -> str:
        if self._type is None:
            self._decode()
        return self._type  # type: ignore[return-value]

    @property
    def data(self) -> Any:
        if self._type is None:
            self._decode()
        return self._data

    def message(self) -> dict[str, Any]:
        return {"op": "event", "ch": self.channel, "seq": self.seq, "type": self.type,
                "data": self.data}

    @property
    def payload(self) -> bytes:
        """The event as JSON text (UTF-8)."""
        if self._payload is None:
            head, tail = event_parts(self.channel, self.type, self.data)
            self._payload = f"{head}{self.seq}{tail}".encode()
        return self._payload

    @property
    def frame(self) -> bytes:
        """The event as one WebSocket text frame, ready to write to any socket."""
        if self._frame is None:
            self._frame = websocket_text_frame(self.payload)
        return self._frame

    def __repr__(self) -> str:
        return f"Publication({self.channel!r}, seq={self.seq})"


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


def parse_frame(message: str | bytes) -> dict[str, Any] | str:
    """The frame as a dict, or a message saying what is wrong with it."""
    if isinstance(message, bytes):
        return "binary frames are not accepted; send JSON text"
    try:
        frame = json.loads(message)
    except ValueError:
        return "frame is not valid JSON"
    except RecursionError:
        return "frame is nested too deeply"
    if not isinstance(frame, dict):
        return "frame must be a JSON object"
    return frame
