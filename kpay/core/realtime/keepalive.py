"""One task that pings every socket of the node and closes those that stay silent."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from kpay.core import metrics

if TYPE_CHECKING:
    from kpay.core.app import KPay

PING_FRAME = bytes([0x89, 0x00])


async def keep_alive(app: KPay, interval: float, timeout: float) -> None:
    """Ping every socket each ``interval`` seconds; close those that do not answer
    within ``timeout``.

    One task for the node instead of Tornado's task per socket (about 1.8 KB each),
    and the pings go out through ``send_frame``, so a slow socket is still bounded.
    """
    timeout = min(timeout, interval) if timeout else 0
    while True:
        await asyncio.sleep(interval - timeout)
        # A socket still authenticating in open() cannot answer yet (Tornado reads its
        # frames only after open() returns): pinged then, it would be closed unheard.
        sockets = tuple(socket for socket in app.sockets if socket.state.opened)
        for socket in sockets:
            socket.state.awaiting_pong = True
            socket.send_frame(PING_FRAME)
        if not timeout:
            continue
        await asyncio.sleep(timeout)
        for socket in sockets:
            stream = socket.stream
            if socket.state.awaiting_pong and stream is not None:
                metrics.SOCKETS_CLOSED.labels("ping_timeout").inc()
                socket.close(reason="ping timed out")
                # The peer is not answering: drop the connection now rather than wait
                # for its close frame.
                stream.close()
