"""Telling users: ``app.tell_users`` (and ``app.tell_user``, a batch of one).

Each told item goes out three ways, each tried even if another fails (docs/plugins.md
"app.tell_user"): the event ``kind`` on ``user:<id>``, a saved notification worded by
``describe_notification`` (published as ``notification`` on ``user:<id>``) and the
forwarders' hooks: ``on_user_notifications`` once with the whole batch, and
``on_user_notification`` per item for the plugins without the batch hook. A batch (the
drip sweep's 08:00 wave) saves its notifications with one ``insert_many`` and publishes
``PUBLISH_CONCURRENCY`` at a time, so its database round trips do not grow with the
number of users told (docs/performance.md "Course drip").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from kpay.core import notifications
from kpay.core.plugins import notify

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay")

# Publishes in flight at once: enough to overlap a Redis broker's round trips, few
# enough that a wave of 500 does not queue 500 writes on one connection.
PUBLISH_CONCURRENCY = 32


class Told(NamedTuple):
    """One thing to tell one user: event ``kind`` with ``data``."""

    user_id: str
    kind: str
    data: dict[str, Any]


async def bounded(calls: Iterable[Awaitable[Any]], limit: int = PUBLISH_CONCURRENCY
                  ) -> list[Any]:
    """Await ``calls`` at most ``limit`` at a time; results (or exceptions) in order."""
    results: list[Any] = []
    pending = list(calls)
    for start in range(0, len(pending), limit):
        results += await asyncio.gather(*pending[start:start + limit],
                                        return_exceptions=True)
    return results


async def tell_users(app: KPay, batch: list[Told]) -> None:
    """Tell every item of ``batch``. A failed publish or save is logged per item and
    never stops the others (raised after the hooks in dev mode); the hooks isolate
    plugins as ``app.notify`` does."""
    for told in batch:
        if told.kind in notifications.RESERVED_KINDS:
            raise ValueError(f"{told.kind!r} is the core's own event on user:<id>; "
                             "pick another kind")
    failed: list[BaseException] = []

    def logged(results: list[Any], what: str, items: list[Told]) -> None:
        for told, result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                log.error("telling user %s %s: %s failed", told.user_id, told.kind, what,
                          exc_info=result)
                failed.append(result)

    logged(await bounded(app.publish(f"user:{t.user_id}", t.kind, t.data) for t in batch),
           "the publish", batch)
    saved_for: list[Told] = []
    docs: list[dict[str, Any]] = []
    for told in batch:
        try:
            described = await notifications.describe(app, told.user_id, told.kind, told.data)
            docs.append(app.notifications.new_doc(told.user_id, described["title"],
                                                  described["body"], described["link"],
                                                  told.kind))
            saved_for.append(told)
        except Exception as e:
            logged([e], "saving the notification", [told])
    try:
        saved = await app.notifications.add_many(docs)
    except Exception as e:
        logged([e] * len(saved_for), "saving the notification", saved_for)
        saved = []
    if saved:
        logged(await bounded(app.publish(f"user:{t.user_id}", "notification", doc)
                             for t, doc in zip(saved_for, saved, strict=True)),
               "publishing the notification", saved_for)
    # A plugin with the batch hook gets the items there, not once more one by one. Each
    # call isolates the plugins (a failure is logged); in dev mode it is raised last.
    async def isolated(call: Awaitable[None], hook: str) -> None:
        try:
            await call
        except Exception as e:
            log.error("telling users: the %s hook call failed", hook, exc_info=e)
            failed.append(e)

    batch_takers = [impl.plugin_name
                    for impl in app.pm.hook.on_user_notifications.get_hookimpls()]
    for told in batch:
        await isolated(notify(app.pm, "on_user_notification", reraise=app.dev,
                              without=batch_takers, app=app, user_id=told.user_id,
                              kind=told.kind, data=told.data), "on_user_notification")
    await isolated(app.notify("on_user_notifications", batch=list(batch)),
                   "on_user_notifications")
    if failed and app.dev:
        raise failed[0]


async def save_notification(app: KPay, user_id: str, title: str, body: str, link: str,
                            kind: str) -> dict[str, Any]:
    """Save one notification already worded (an operator's or consultant's message,
    kpay/core/audience/messages.py) and publish it live as ``tell_users`` does for the
    ones it words: event ``notification`` on ``user:<id>``, for the bell and the list."""
    saved = await app.notifications.add(user_id, title, body, link, kind)
    await app.publish(f"user:{user_id}", "notification", saved)
    return saved
