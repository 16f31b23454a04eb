"""Writing frames to one client socket: straight to the kernel when it takes them,
coalesced into one write while it does not, bounded (docs/performance.md, "Hub fan-out").
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import tornado.iostream

from kpay.core import metrics

if TYPE_CHECKING:
    from kpay.core.realtime.socket import SocketState

log = logging.getLogger("kpay.socket")


class FrameWriter:
    """The outbound half of ``SocketHandler`` (kpay/core/realtime/socket.py), mixed in
    ahead of Tornado's ``WebSocketHandler``, whose ``close`` it wraps.

    ``stream`` is set while the socket can take frames, None once it is closing or gone;
    ``state.pending`` holds the frames coalesced while a write is in flight.
    """

    stream: tornado.iostream.IOStream | None
    state: SocketState
    user_id: str | None

    def start_writing(self, stream: tornado.iostream.IOStream, limit: int) -> None:
        """Take frames from now on, holding at most ``limit`` bytes for a slow client."""
        # Bounded outbound buffer: a client that stops reading is dropped, not buffered.
        stream.max_write_buffer_size = limit
        # Every write is whole frames (coalesced by send_frame under backpressure), so
        # Nagle's algorithm only delays them: a frame written while the previous one is
        # unacknowledged would wait for the client's delayed ACK (40 ms on Linux).
        # Tornado's handshake leaves it on (asyncio's transports, websockets', turn it off).
        stream.set_nodelay(True)
        self.stream = stream
        # Plain TCP (not TLS): send_frame may write straight to the socket.
        self.state.direct_send = type(stream) is tornado.iostream.IOStream

    def send_frame(self, frame: bytes) -> bool:
        """Write one pre-built frame; False when the socket is gone or was dropped.

        The hot path of fan-out. When nothing is queued, the frame goes straight to
        the kernel with one send() (what IOStream.write would do first anyway, minus
        its per-write Future and callback). What the kernel does not take goes through
        one IOStream.write; frames that come while that write is in flight are
        coalesced in ``state.pending`` and go out together with one write when it
        completes, so a backed-up socket costs one write per drain, not one per frame.
        What a socket holds (IOStream buffer and pending) stays under
        ``outbound_buffer_bytes``; past it the socket is dropped as a slow consumer.
        """
        stream = self.stream
        if stream is None or stream.closed():
            return False
        pending = self.state.pending
        if pending is not None:
            if self.outbound_bytes() + len(frame) > stream.max_write_buffer_size:
                return self._drop_slow_consumer(stream)
            pending += frame
            return True
        if self.state.direct_send and not stream.writing():
            try:
                sent = stream.socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                stream.close()
                return False
            if sent == len(frame):
                return True
            frame = frame[sent:]
        try:
            written = stream.write(frame)
        except tornado.iostream.StreamBufferFullError:
            return self._drop_slow_consumer(stream)
        except tornado.iostream.StreamClosedError:
            return False
        self.state.pending = bytearray()
        written.add_done_callback(self._write_pending)
        return True

    def _write_pending(self, written: asyncio.Future[None]) -> None:
        """The write in flight completed (or the stream closed): send what came meanwhile."""
        pending, self.state.pending = self.state.pending, None
        if pending:
            self.send_frame(pending)

    def outbound_bytes(self) -> int:
        """Bytes queued for this socket and not yet taken by the kernel."""
        stream = self.stream
        queued = len(stream._write_buffer) if stream is not None else 0
        return queued + len(self.state.pending or b"")

    def _drop_slow_consumer(self, stream: tornado.iostream.IOStream) -> bool:
        log.info("socket of %s dropped: outbound buffer full", self.user_id)
        metrics.SOCKETS_CLOSED.labels("slow_consumer").inc()
        self.stream = None
        self.state.pending = None
        stream.close()
        return False

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        # No event frame may follow our close frame (RFC 6455 5.5.1): frames still
        # pending go to the stream ahead of it, and nothing is accepted after.
        stream, self.stream = self.stream, None
        pending, self.state.pending = self.state.pending, None
        if pending and stream is not None and not stream.closed():
            try:
                stream.write(pending)
            except (tornado.iostream.StreamBufferFullError, tornado.iostream.StreamClosedError):
                pass  # too slow or already gone: the close frame is all it gets
        super().close(code, reason)
