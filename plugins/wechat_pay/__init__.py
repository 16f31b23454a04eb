"""Built-in plugin wechat_pay: WeChat Pay v2 (jsapi, mweb, native) through wechatpy,
or API v3 (``api_version = "v3"``; v2 keeps answering for its own orders), their
notifies, refunds, the H5 OAuth login (openid) and the JS-SDK config.

See docs/wechat_pay.md. Modules: settings (config section), signing (wire format),
client (wechatpy clients + thread pool), provider (PaymentProvider; its notifies come
through the core's routes /api/v1/pay/wechat/...), notify (the notify records), oauth
and jssdk (login, wx.config), fake (a local fake of WeChat's servers), testing (the
``fake_wechat`` and ``fake_wechat_v3`` pytest fixtures); API v3 in v3_signing (wire
format), v3_client (keys, signed client, v3 runtime), v3_provider, v3_fake and
v3_fake_routes; bills (the daily bill check) and v3_fake_bills (the fake's bills).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kpay import hookimpl
from kpay.core.scheduler import PeriodicJob
from kpay.core.store import IndexSpec
from kpay.core.web import Route
from plugins.wechat_pay import bills, jssdk, notify, oauth, v3_provider
from plugins.wechat_pay.client import OAUTH_CALLBACK_PATH
from plugins.wechat_pay.settings import WeChatPaySettings

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from plugins.wechat_pay.client import WeChatRuntime

SECTION = "wechat_pay"


def runtime_of(app: KPay) -> WeChatRuntime:
    """The plugin's state for ``app``, made (and the config checked) on first use."""
    from plugins.wechat_pay.client import WeChatRuntime

    return app.plugin_state(SECTION, lambda: WeChatRuntime(app, app.settings.section(SECTION)))


@hookimpl
def register_settings():
    return [(SECTION, WeChatPaySettings)]


@hookimpl
def register_routes(app):
    kwargs = {"runtime": runtime_of(app)}
    tags = ("wechat",)
    return [
        Route("/api/v1/wechat/oauth/start", oauth.OAuthStartHandler, kwargs, tags),
        Route(OAUTH_CALLBACK_PATH, oauth.OAuthCallbackHandler, kwargs, tags),
        Route("/api/v1/wechat/jssdk", jssdk.JsSdkHandler, kwargs, tags),
    ]


@hookimpl
def register_payment_providers(app):
    return runtime_of(app).providers()


@hookimpl
def register_collections(app):
    return [notify.NOTIFIES, oauth.STATES, jssdk.TOKENS, v3_provider.NOTIFY_IDS, bills.CHECKS]


@hookimpl
async def register_indexes(app):
    # Notify records expire by themselves (TTL on the database clock; see notify.py).
    retention = await notify.retention_index(
        app, app.settings.section(SECTION).notify_retention_days)
    return [*notify.INDEXES, retention, *oauth.INDEXES, *v3_provider.NOTIFY_IDS_INDEXES,
            # Unused login states disappear by themselves (MongoDB TTL index).
            IndexSpec.of(oauth.STATES, "stored_at",
                         expireAfterSeconds=int(oauth.STATE_TTL.total_seconds()) * 2)]


@hookimpl
def register_jobs(app):
    # The daily bill check (API v3 only; it returns at once in v2 mode).
    return [PeriodicJob(bills.SOURCE, lambda: bills.check(app), bills.JOB_SECONDS)]


@hookimpl
async def on_startup(app):
    await runtime_of(app).start()


@hookimpl
async def on_shutdown(app):
    await runtime_of(app).stop()
