"""The socket channel ``room:<id>``: who may subscribe, what may be published, and
throttled presence counts.

Subscribers: the host and users holding an active ticket (a removed user's ticket
is revoked, so they cannot come back). Publishing: the host sends text, an image or
an audio URL; students send text only when the room allows chat and they are not
muted. Every message is kept with its seq (history.py) for the replay.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kpay.core.auth import User
from kpay.core.errors import BadRequest, Forbidden
from kpay.core.realtime.channels import ChannelRule
from kpay.core.web import validate
from plugins.live_qa import history, questions, rooms
from plugins.live_qa.settings import settings_of

if TYPE_CHECKING:
    from kpay.core.app import KPay

PREFIX = "room"

MediaUrl = Annotated[str, StringConstraints(max_length=1000, pattern=r"^https?://\S+$")]


class HostMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    image_url: MediaUrl | None = None
    audio_url: MediaUrl | None = None
    # Length of an audio clip in seconds, shown by the player before it loads.
    duration: Annotated[int, Field(strict=True, ge=0, le=3600)] | None = None


class StudentMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str


async def on_publish(app: KPay, user: User, room_id: str, type: str, data: Any) -> None:
    if type != "message":
        raise BadRequest("clients publish only type 'message' on a room", code="bad_type")
    if not isinstance(data, dict):
        raise BadRequest("data must be an object", code="invalid_field", field="data")
    room = await rooms.get(app, room_id)
    sender = await rooms.member(app, room, user)
    if sender is None:
        raise Forbidden("this needs a ticket to the room", code="no_ticket")
    rooms.require_live(room)
    if sender.is_host:
        message = validate(HostMessage, data)
        body = message.model_dump(exclude_none=True)
        if "text" in body:
            body["text"] = questions.clean_text(app, body["text"])
        if not body.keys() & {"text", "image_url", "audio_url"}:
            raise BadRequest("a message needs text, image_url or audio_url",
                             code="invalid_field", field="data")
    else:
        if not room["chat"]:
            raise Forbidden("only the host speaks in this room", code="chat_disabled")
        if sender.muted:
            raise Forbidden("you are muted in this room", code="muted")
        body = {"text": questions.clean_text(app, validate(StudentMessage, data).text)}
    body.update({"from": user.id, "role": "host" if sender.is_host else "student",
                 "at": app.clock.now().isoformat()})
    await history.publish(app, room_id, "message", body)


RULE = ChannelRule(PREFIX, rooms.may_enter, on_publish)


# -- presence ----------------------------------------------------------------------


class PresenceThrottle:
    """Sends ``presence {"count"}`` on a room at most once per interval: the first
    change goes out at once, later ones within the interval are folded into one
    event carrying the count at the end of it."""

    def __init__(self, app: KPay, interval: float) -> None:
        self.app = app
        self.interval = interval
        self.last_sent: dict[str, float] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}

    def changed(self, channel: str) -> None:
        if channel in self.timers:
            return
        loop = asyncio.get_running_loop()
        wait = self.last_sent.get(channel, float("-inf")) + self.interval - loop.time()
        if wait <= 0:
            self._send(channel)
        else:
            self.timers[channel] = loop.call_later(wait, self._fire, channel)

    def _fire(self, channel: str) -> None:
        self.timers.pop(channel, None)
        self._send(channel)

    def _send(self, channel: str) -> None:
        self.last_sent[channel] = asyncio.get_running_loop().time()
        self.app.spawn(self._announce(channel))

    async def _announce(self, channel: str) -> None:
        # The count of every node (the broker's presence, docs/websocket.md).
        count = await self.app.broker.presence(channel)
        if count == 0:
            # Nobody left to tell; forget the room so the map does not grow forever.
            self.last_sent.pop(channel, None)
            return
        await self.app.publish(channel, "presence", {"count": count})

    def close(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()


def throttle_for(app: KPay) -> PresenceThrottle:
    """The app's one throttle (tests run several apps in one process)."""
    return app.plugin_state("live_qa.presence", lambda: PresenceThrottle(
        app, settings_of(app).presence_interval_seconds))


def presence_changed(app: KPay, channel: str) -> None:
    # A stopping app's sockets are still closing: they must not start new timers.
    if channel.startswith(PREFIX + ":") and not app.stopped:
        throttle_for(app).changed(channel)


def stop(app: KPay) -> None:
    throttle_for(app).close()
