"""Messages to a segment: each member finds it in their notification list, live on
``user:<id>``, and forwarders (``on_user_notification``) may pass it on.

A request checks the caps and saves the message record, then a task sends it in
batches; the record's ``sent``/``failed`` counts are the progress. One recipient that
fails is counted and logged, never stops the rest. A retried request with the same
``Idempotency-Key`` finds the first record instead of sending twice."""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo.errors import DuplicateKeyError

from kpay.core import telling
from kpay.core.audience import MESSAGES, PLATFORM
from kpay.core.audience.rules import days_ago
from kpay.core.errors import Conflict, NotFound, RateLimited
from kpay.core.notifications import check_link

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.audience")

KIND = "audience_message"
#: Members sent to between two updates of the record's counts.
BATCH = 100


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "title": "本周直播预告", "body": "周六晚八点，不见不散", "link": "/static/index.html"}})
    title: str = Field(min_length=1, max_length=30)
    body: str = Field("", max_length=300)
    link: str | None = Field(None, max_length=300)


def public(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "segment_id": doc["segment_id"], "title": doc["title"],
            "body": doc["body"], "link": doc.get("link"), "status": doc["status"],
            "total": doc["total"], "sent": doc["sent"], "failed": doc["failed"],
            "created_at": doc["created_at"]}


def fingerprint(segment_id: str, message: MessageBody) -> str:
    text = "\x1f".join([segment_id, message.title, message.body, message.link or ""])
    return hashlib.sha256(text.encode()).hexdigest()


async def sent_today(app: KPay, owner: str) -> int:
    return await app.store[MESSAGES].count_documents(
        {"owner": owner, "created_at": {"$gte": days_ago(app, 1)}})


async def start(app: KPay, owner: str, segment_id: str, message: MessageBody,
                member_ids: list[str], key: str | None) -> tuple[dict[str, Any], bool]:
    """Save the message and start sending it; ``(record, replayed)``. 429 ``daily_cap``
    past ``messages_per_day``, 409 ``too_many_recipients`` past ``max_recipients`` (a
    consultant's), 409 ``idempotency_conflict`` for a key used for another message.
    The caps are ``[audience]`` settings."""
    link = check_link(message.link or None)
    collection = app.store[MESSAGES]
    print_ = fingerprint(segment_id, message)
    message_id = ("msg" + hashlib.sha256(f"{owner}\x1f{key}".encode()).hexdigest()[:24]
                  if key else "msg" + secrets.token_hex(12))
    if key and (first := await collection.find_one({"_id": message_id})):
        if first["fingerprint"] != print_:
            raise Conflict("this Idempotency-Key was used for another message",
                           code="idempotency_conflict")
        return first, True
    caps = app.settings.audience
    if owner != PLATFORM:
        if await sent_today(app, owner) >= caps.messages_per_day:
            raise RateLimited(f"at most {caps.messages_per_day} messages a day",
                              code="daily_cap", limit=caps.messages_per_day)
        if len(member_ids) > caps.max_recipients:
            raise Conflict(f"a message reaches at most {caps.max_recipients} students",
                           code="too_many_recipients", limit=caps.max_recipients)
    doc = {"_id": message_id, "owner": owner, "segment_id": segment_id,
           "title": message.title.strip(), "body": message.body.strip(), "link": link,
           "fingerprint": print_, "status": "sending", "total": len(member_ids),
           "sent": 0, "failed": 0, "created_at": app.clock.now()}
    try:
        await collection.insert_one(doc)
    except DuplicateKeyError:
        return await collection.find_one({"_id": message_id}), True
    app.spawn(send(app, doc, member_ids))
    return doc, False


async def deliver(app: KPay, doc: dict[str, Any], user_id: str) -> None:
    """One recipient: the saved notification, published live, and the forwarders."""
    await telling.save_notification(app, user_id, doc["title"], doc["body"], doc["link"],
                                    KIND)
    await app.notify("on_user_notification", user_id=user_id, kind=KIND,
                     data={"message_id": doc["_id"], "from": doc["owner"],
                           "title": doc["title"], "body": doc["body"], "link": doc["link"]})


async def send(app: KPay, doc: dict[str, Any], member_ids: list[str]) -> None:
    """Send to every member in batches, counting each batch on the record."""
    collection = app.store[MESSAGES]
    for start_at in range(0, len(member_ids), BATCH):
        sent = failed = 0
        for user_id in member_ids[start_at:start_at + BATCH]:
            try:
                await deliver(app, doc, user_id)
                sent += 1
            except Exception:
                log.exception("audience message %s to %s failed", doc["_id"], user_id)
                failed += 1
        await collection.update_one({"_id": doc["_id"]},
                                    {"$inc": {"sent": sent, "failed": failed}})
    await collection.update_one({"_id": doc["_id"]}, {"$set": {"status": "done"}})


async def get(app: KPay, owner: str, message_id: str) -> dict[str, Any]:
    doc = await app.store[MESSAGES].find_one({"_id": message_id[:64], "owner": owner})
    if doc is None:
        raise NotFound("no such message", code="not_found")
    return doc


async def recent(app: KPay, owner: str, limit: int = 20) -> list[dict[str, Any]]:
    cursor = app.store[MESSAGES].find({"owner": owner}).sort("created_at", -1).limit(limit)
    return [public(doc) async for doc in cursor]


def cap_state(app: KPay, today: int, owner: str) -> dict[str, Any]:
    caps = app.settings.audience
    capped = owner != PLATFORM
    return {"per_day": caps.messages_per_day if capped else None, "sent_today": today,
            "max_recipients": caps.max_recipients if capped else None}


