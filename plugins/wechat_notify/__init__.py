"""Built-in plugin wechat_notify: forwards users' notifications (``on_user_notifications``
for a batch, ``on_user_notification`` for one) to WeChat as 公众号 template messages
(service notices) or subscription messages (订阅消息, with the user's consent per
template), at most once each.

See docs/wechat_notify.md. Modules: settings ([wechat_notify]), client (access token,
one send and what it proves), sends (records before the call, the retry job), handlers
(consents, the dev list), fake (a local fake of WeChat's message API), testing (the
``fake_wechat_notify`` pytest fixture).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kpay import hookimpl
from kpay.core.scheduler import PeriodicJob
from kpay.core.telling import Told
from plugins.wechat_notify import events, handlers, sends
from plugins.wechat_notify.client import Messenger
from plugins.wechat_notify.settings import (
    REAL_API,
    SECTION,
    WeChatNotifySettings,
    credentials,
    settings_of,
)

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.wechat_notify")
RETRY_JOB_SECONDS = 15


class Runtime:
    """The plugin's state for one app: the messenger (None: not configured) and, in dev
    mode without a 公众号, the local fake it talks to."""

    def __init__(self) -> None:
        self.messenger: Messenger | None = None
        self.fake: object | None = None


def runtime_of(app: KPay) -> Runtime:
    return app.plugin_state(SECTION, Runtime)


@hookimpl
def register_settings():
    return [(SECTION, WeChatNotifySettings)]


@hookimpl
def register_routes(app):
    return handlers.routes(app)


@hookimpl
def register_collections(app):
    return [sends.SENDS, sends.CONSENTS, events.PUSHES]


@hookimpl
def register_indexes(app):
    return [*sends.INDEXES, *events.INDEXES]


@hookimpl
def register_jobs(app):
    return [PeriodicJob("wechat_notify.retry",
                        lambda: sends.retry_due(app, runtime_of(app).messenger),
                        RETRY_JOB_SECONDS)]


@hookimpl
async def on_startup(app):
    settings = settings_of(app)
    runtime = runtime_of(app)
    if not any(k.template_id for k in settings.kinds.values()):
        return  # nothing to forward: no client, no fake
    appid, secret = credentials(app)
    base = settings.api_base_url or REAL_API
    if not (appid and secret) and not settings.api_base_url:
        if not app.dev:
            log.warning("wechat_notify: no [wechat_notify] (or [wechat_pay]) appid and "
                        "app_secret: notifications are not forwarded to WeChat")
            return
        from plugins.wechat_notify.fake import FakeWeChatMessages

        fake = FakeWeChatMessages()
        await fake.start()
        runtime.fake = fake
        appid, secret, base = fake.settings()["appid"], fake.settings()["app_secret"], \
            fake.base_url
        log.info("wechat_notify: dev mode without a 公众号: messages go to the local fake "
                 "at %s (GET /api/v1/wechat-notify/sent lists them)", base)
    runtime.messenger = Messenger(app, base, appid, secret, settings.http_timeout_seconds)


@hookimpl
async def on_shutdown(app):
    fake = runtime_of(app).fake
    if fake is not None:
        await fake.stop()  # type: ignore[attr-defined]


@hookimpl
async def on_user_notifications(app, batch):
    await sends.forward(app, runtime_of(app).messenger, batch)


@hookimpl
async def on_user_notification(app, user_id, kind, data):
    # Only what is notified one by one (an audience message to each recipient):
    # app.tell_users brings its items to on_user_notifications instead.
    await sends.forward(app, runtime_of(app).messenger, [Told(user_id, kind, data)])
