"""Forwarding notifications: every send is recorded in ``wechat_notify_sends`` before
WeChat is called, under a key made of the user, the kind and the data, so one
notification is sent at most once however often (or concurrently) it is told; the
retry job resends only what WeChat provably did not take (docs/wechat_notify.md). A
batch (``app.tell_users``) reads its users' openids and consents once and inserts its
records at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kpay.core import notifications
from kpay.core.store import IndexSpec
from plugins.wechat_notify.settings import SUBSCRIBE_ONLY, KindSettings, settings_of

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from kpay.core.telling import Told
    from plugins.wechat_notify.client import Messenger

log = logging.getLogger("kpay.wechat_notify")

SENDS = "wechat_notify_sends"
CONSENTS = "wechat_notify_consents"
#: States a send ends in (besides "sending", "retry" while it is under way).
FINAL = ("sent", "skipped", "not_following", "refused", "failed", "unknown")
RETRY_BATCH = 50
# Notifications recorded per insert (and users per read): a drip wave's batch.
FORWARD_BATCH = 500
INDEXES = [IndexSpec.of(SENDS, "state", "next_at"), IndexSpec.of(SENDS, ("created_at", -1))]


def send_key(user_id: str, kind: str, data: dict[str, Any]) -> str:
    """One notification's key: the same user, kind and data is the same notification."""
    canonical = json.dumps([user_id, kind, data], sort_keys=True, ensure_ascii=False,
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def consent_id(user_id: str, template_id: str) -> str:
    return f"{user_id}:{template_id}"


async def has_consent(app: KPay, user_id: str, template_id: str) -> bool:
    return bool(await consented(app, [consent_id(user_id, template_id)]))


async def consented(app: KPay, ids: list[str]) -> set[str]:
    """Those of the consent ids (``consent_id``) the user accepted, in one query."""
    if not ids:
        return set()
    # One round trip (as app.users.openids): the whole answer in the first batch.
    cursor = app.store[CONSENTS].find({"_id": {"$in": ids}, "accepted": True}, {"_id": 1},
                                      batch_size=len(ids), limit=len(ids))
    return {doc["_id"] async for doc in cursor}


async def record_consent(app: KPay, user_id: str, template_id: str, accepted: bool) -> None:
    await app.store[CONSENTS].update_one(
        {"_id": consent_id(user_id, template_id)},
        {"$set": {"user_id": user_id, "template_id": template_id, "accepted": accepted,
                  "at": app.clock.now()}}, upsert=True)


async def record_wechat_answer(app: KPay, user_id: str, template_id: str, accepted: bool,
                               answered_at: datetime) -> bool:
    """Keep what WeChat's push says the user chose (docs/wechat_notify.md "Consents from
    WeChat"), unless a later push was kept already: WeChat resends a push it got no
    answer to, and pushes may arrive out of order. Returns whether it was kept."""
    newer = {"$or": [{"wechat_at": {"$exists": False}}, {"wechat_at": {"$lt": answered_at}}]}
    try:
        await app.store[CONSENTS].update_one(
            {"_id": consent_id(user_id, template_id), **newer},
            {"$set": {"user_id": user_id, "template_id": template_id, "accepted": accepted,
                      "at": app.clock.now(), "wechat_at": answered_at}}, upsert=True)
    except DuplicateKeyError:
        return False  # the record exists with a later push: this one is older
    return True


def field_value(name: str, data: dict[str, Any], described: dict[str, Any],
                told_at: str) -> str:
    """A template keyword's value: a key of the data, else the Chinese wording."""
    if name in data and isinstance(data[name], (str, int)):
        value = str(data[name])
    elif name in ("title", "body"):
        value = str(described.get(name) or "")
    elif name == "time":
        value = told_at
    else:
        value = ""
    return notifications.clip(value, 200 if name == "body" else 20) or "-"


async def build_payload(app: KPay, user_id: str, openid: str, kind: str,
                        config: KindSettings, data: dict[str, Any]) -> dict[str, Any]:
    try:
        described = await notifications.describe(app, user_id, kind, data)
    except Exception:  # tell_user logged it: the message goes without the wording
        described = {}
    zone = ZoneInfo(app.settings.server.timezone)
    told_at = app.clock.now().astimezone(zone).strftime("%Y-%m-%d %H:%M")
    values = {keyword: {"value": field_value(name, data, described, told_at)}
              for keyword, name in config.fields.items()}
    payload: dict[str, Any] = {"touser": openid, "template_id": config.template_id,
                               "data": values}
    base = app.settings.server.public_url or (f"http://127.0.0.1:{app.port}" if app.dev
                                              else "")
    link = described.get("link")
    if link and base:
        payload["url" if config.mode == "template" else "page"] = base.rstrip("/") + link
    return payload


def forwarded(app: KPay, kind: str) -> KindSettings | None:
    """The settings of a kind this plugin forwards, or None (not configured, or
    marketing configured as a template message: the settings refuse that too)."""
    config = settings_of(app).kinds.get(kind)
    if config is None or not config.template_id:
        return None
    if kind in SUBSCRIBE_ONLY and config.mode != "subscribe":
        return None
    return config


async def forward(app: KPay, messenger: Messenger | None, batch: list[Told]) -> list[str]:
    """Record the sends of a batch of notifications and start them, FORWARD_BATCH at a
    time: for each, one read of the users' openids, one of their consents (subscription
    messages), one insert of the records. Returns the keys of the records made now; a
    notification whose kind is not forwarded, or that was recorded before (told twice,
    or concurrently), is left out and nothing happens for it."""
    if messenger is None:
        return []
    keys: list[str] = []
    for start in range(0, len(batch), FORWARD_BATCH):
        keys += await forward_some(app, messenger, batch[start:start + FORWARD_BATCH])
    return keys


async def forward_some(app: KPay, messenger: Messenger, batch: list[Told]) -> list[str]:
    wanted = [(told, config) for told in batch
              if (config := forwarded(app, told.kind)) is not None]
    if not wanted:
        return []
    openids = await app.users.openids(told.user_id for told, _ in wanted)
    accepted = await consented(app, sorted({
        consent_id(told.user_id, config.template_id) for told, config in wanted
        if config.mode == "subscribe" and told.user_id in openids}))
    now = app.clock.now()
    records: dict[str, dict[str, Any]] = {}
    for told, config in wanted:
        key = send_key(told.user_id, told.kind, told.data)
        if key in records:
            continue  # the same notification twice in one batch: one send
        record: dict[str, Any] = {
            "_id": key, "user_id": told.user_id, "kind": told.kind, "mode": config.mode,
            "template_id": config.template_id, "attempts": 0, "created_at": now,
            "updated_at": now}
        openid = openids.get(told.user_id)
        if not openid:
            record.update(state="skipped", reason="no_openid")
        elif (config.mode == "subscribe"
              and consent_id(told.user_id, config.template_id) not in accepted):
            record.update(state="skipped", reason="no_consent")
        else:
            payload = await build_payload(app, told.user_id, openid, told.kind, config,
                                          told.data)
            record.update(state="sending", attempts=1, payload=payload)
        records[key] = record
    made, failure = await insert_new(app, list(records.values()))
    for record in made:
        if record["state"] == "sending":
            app.spawn(deliver(app, messenger, record))
    if failure is not None:
        raise failure  # after sending what was recorded: logged by the hook's caller
    return [record["_id"] for record in made]


async def insert_new(app: KPay, records: list[dict[str, Any]]
                     ) -> tuple[list[dict[str, Any]], Exception | None]:
    """Insert the records in one round trip: (the ones inserted, the error if one
    failed for another reason than its key). A record whose key exists was told before
    (or is being told now by another call): that record's inserter sends it, so it is
    left out here (at most once)."""
    try:
        await app.store[SENDS].insert_many(records, ordered=False)
    except BulkWriteError as e:
        errors = e.details.get("writeErrors", [])
        refused = {error["index"] for error in errors}
        made = [record for i, record in enumerate(records) if i not in refused]
        duplicates_only = all(error.get("code") == 11000 for error in errors)
        return made, None if duplicates_only else e
    return records, None


async def deliver(app: KPay, messenger: Messenger, record: dict[str, Any]) -> str:
    """Call WeChat for a record already marked "sending" and store what it proves."""
    outcome = await messenger.send(record["mode"], record["payload"])
    now = app.clock.now()
    changes: dict[str, Any] = {"state": outcome.state, "errcode": outcome.errcode,
                               "updated_at": now}
    if outcome.state == "sent":
        changes["msgid"] = outcome.msgid
    elif outcome.state == "retry":
        settings = settings_of(app)
        if record["attempts"] >= settings.max_attempts:
            changes.update(state="failed", reason="gave_up")
        else:
            wait = settings.retry_seconds * 2 ** (record["attempts"] - 1)
            changes["next_at"] = now + timedelta(seconds=wait)
    elif outcome.state == "refused":
        # 43101: the user refused (or used up) the subscription: ask again before sending.
        await record_consent(app, record["user_id"], record["template_id"], False)
    elif outcome.state not in ("not_following",):
        log.warning("wechat_notify: %s to user %s ended %s (errcode %s)", record["kind"],
                    record["user_id"], outcome.state, outcome.errcode)
    await app.store[SENDS].update_one({"_id": record["_id"], "state": "sending"},
                                      {"$set": changes})
    return changes["state"]


async def retry_due(app: KPay, messenger: Messenger | None) -> int:
    """The retry job: claim each due send (one node wins each) and call WeChat again."""
    if messenger is None:
        return 0
    sends = app.store[SENDS]
    done = 0
    for _ in range(RETRY_BATCH):
        now = app.clock.now()
        claimed = await sends.find_one_and_update(
            {"state": "retry", "next_at": {"$lte": now}},
            {"$set": {"state": "sending", "updated_at": now}, "$inc": {"attempts": 1}},
            sort=[("next_at", 1)], return_document=ReturnDocument.AFTER)
        if claimed is None:
            break
        await deliver(app, messenger, claimed)
        done += 1
    return done


async def recent(app: KPay, limit: int) -> list[dict[str, Any]]:
    """The newest send records (for the dev list), without the openid."""
    cursor = app.store[SENDS].find({}).sort("created_at", -1).limit(limit)
    out = []
    for doc in await cursor.to_list(limit):
        payload = doc.get("payload") or {}
        out.append({"id": doc["_id"], "user_id": doc["user_id"], "kind": doc["kind"],
                    "mode": doc["mode"], "template_id": doc["template_id"],
                    "state": doc["state"], "reason": doc.get("reason"),
                    "errcode": doc.get("errcode"), "attempts": doc.get("attempts", 0),
                    "data": payload.get("data", {}),
                    "link": payload.get("url") or payload.get("page"),
                    "created_at": doc["created_at"]})
    return out
