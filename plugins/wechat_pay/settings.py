"""The ``[wechat_pay]`` config section and the effective configuration at start-up.

Outside dev mode a merchant must be configured completely; start-up stops naming the
missing keys. In dev mode with no merchant, the plugin starts the local fake WeChat
server (plugins/wechat_pay/fake.py) on a loopback port and talks to it instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from kpay.core.auth import check_secret
from kpay.core.config import Section
from kpay.core.errors import ConfigError
from plugins.wechat_pay.signing import SIGN_TYPES

REAL_PAY_API = "https://api.mch.weixin.qq.com/"
REAL_API = "https://api.weixin.qq.com/"
REAL_OPEN = "https://open.weixin.qq.com/"

MERCHANT_KEYS = ("appid", "mch_id", "api_key")
PRODUCTION_KEYS = (*MERCHANT_KEYS, "mch_cert", "mch_key")
# Keys holding secrets: outside dev mode a weak one stops start-up (kpay.core.auth).
SECRET_KEYS = ("api_key", "app_secret")


class WeChatPaySettings(Section):
    # The official account (公众号) the payments and the OAuth login belong to.
    appid: str = ""
    # Its AppSecret: needed for the OAuth login and the JS-SDK config, not for paying.
    app_secret: str = Field("", repr=False)  # a secret: kept out of reprs and logs
    mch_id: str = ""
    # The merchant API key (API v2, 32 characters), set in the merchant platform.
    api_key: str = Field("", repr=False)  # a secret: kept out of reprs and logs
    # Paths of the merchant API certificate and its private key (PEM): refunds need them.
    mch_cert: str = ""
    mch_key: str = ""
    # Where WeChat posts payment results; empty: <server.public_url>/api/v1/pay/wechat/notify.
    notify_url: str = ""
    refund_notify_url: str = ""
    sign_type: str = Field("MD5", pattern="^(" + "|".join(SIGN_TYPES) + ")$")
    # Base URLs, configurable so tests and demos can point them at the local fake.
    api_base_url: str = ""
    oauth_api_base_url: str = ""
    oauth_base_url: str = ""
    # A CA bundle to trust for api_base_url (the fake's TLS in tests); empty: system CAs.
    ca_bundle: str = ""
    # Default OAuth scope; snsapi_userinfo asks the user and gives the nickname too.
    oauth_scope: str = Field("snsapi_base", pattern="^snsapi_(base|userinfo)$")
    # Where the OAuth callback may send the browser back to (prefixes); empty: own origin.
    oauth_redirect_allow: list[str] = []
    # Origins (scheme://host[:port]) of the pages /api/v1/wechat/jssdk signs wx.config
    # for, besides [server] public_url and [server] allowed_origins (your JS-SDK safe
    # domains). In dev mode the app's own http://127.0.0.1:<port> and localhost too.
    jssdk_origins: list[str] = []
    # Blocking wechatpy calls run in a thread pool of this size, never on the event loop.
    http_workers: int = Field(8, ge=1, le=64)
    http_timeout_seconds: float = Field(10.0, gt=0, le=60)
    # The mweb (H5 outside WeChat) scene info reported to WeChat.
    h5_site_name: str = "kpay"
    h5_site_url: str = ""
    # Every notify received is recorded in wechat_notifies; a record is deleted this many
    # days after it was stored, by a MongoDB TTL index on the database's own clock.
    # WeChat resends a notify for about 24 hours; booking once never reads these records
    # (it rests on the order's state, which does not expire), so at least 3.
    notify_retention_days: int = Field(30, ge=3, le=3650)
    # How much of a verified notify's body a record keeps, in bytes (a real one is about
    # 1 KiB); the length and SHA-256 of the whole body are always kept. A body that failed
    # parsing or verification keeps at most its first 256 bytes.
    notify_body_bytes: int = Field(4096, ge=0, le=65_536)
    # Which API new orders use: "v2" (the default, so older configs keep working) or
    # "v3". After a switch to v3, orders created under v2 are still queried, closed,
    # refunded and answered by v2 while its keys stay configured (docs/wechat_pay.md).
    api_version: str = Field("v2", pattern="^v[23]$")
    # API v3 (appid and mch_id above are the same; mch_key is the merchant API private
    # key, apiclient_key.pem): the 商户API证书序列号 and the APIv3密钥 (32 characters).
    mch_serial_no: str = ""
    api_v3_key: str = Field("", repr=False)  # a secret: kept out of reprs and logs
    # How WeChat's answers and callbacks are checked: the 微信支付公钥 (its ID,
    # PUB_KEY_ID_..., and the path of its PEM) and/or the 平台证书 (path of a PEM file
    # with one or more certificates; merchants from before public keys). Both may be set
    # while switching.
    wechatpay_public_key_id: str = ""
    wechatpay_public_key: str = ""
    platform_certs: str = ""
    # The v3 API's base URL (empty: WeChat's); the v3 notify URLs, empty:
    # <server.public_url>/api/v1/pay/wechat-v3/notify and .../refund-notify.
    v3_api_base_url: str = ""
    v3_notify_url: str = ""
    v3_refund_notify_url: str = ""
    # 商家转账 (payouts through v3, docs/wechat_pay.md "商家转账"): the transfer scene
    # enabled in 商户平台 (1005 佣金报酬: consultants are paid for their work), the
    # scene's report fields (信息类型 -> 信息内容, as the scene requires them; the user
    # does not see them), what the user sees: the remark (at most 32 characters) and the
    # 收款感知 (one of the scene's words; empty: not sent). Empty notify URL:
    # <server.public_url>/api/v1/pay/wechat-v3/transfer-notify.
    transfer_scene_id: str = Field("1005", pattern=r"^[0-9]{1,16}$")
    transfer_scene_report_infos: dict[str, str] = {"岗位类型": "知识服务顾问",
                                                   "报酬说明": "咨询与课程收入提现"}
    transfer_remark: str = Field("收入提现", min_length=1, max_length=32)
    transfer_user_recv_perception: str = "劳务报酬"
    v3_transfer_notify_url: str = ""

    @field_validator("transfer_scene_report_infos")
    @classmethod
    def report_infos(cls, infos: dict[str, str]) -> dict[str, str]:
        # WeChat's limits: 信息类型 at most 15 characters, 信息内容 at most 32.
        for kind, content in infos.items():
            if not 0 < len(kind) <= 15 or not 0 < len(content) <= 32:
                raise ValueError(f"{kind!r}: the type must be 1 to 15 characters and its "
                                 "content 1 to 32")
        return infos
    # API v3: from this Beijing hour on, the daily bill check (wechat_pay.bill_check)
    # compares yesterday's trade bill with kpay's books; WeChat makes it around 10:00.
    bill_check_hour: int = Field(10, ge=0, le=23)

    @field_validator("jssdk_origins")
    @classmethod
    def origins_only(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if page_origin(origin) is None or urlsplit(origin).path not in ("", "/"):
                raise ValueError(f"{origin!r} is not an origin like https://h5.example.com")
        return origins


@dataclass(frozen=True)
class Effective:
    """The configuration the plugin runs with (the fake's, in dev without a merchant)."""

    settings: WeChatPaySettings
    pay_api: str
    api: str
    open: str
    uses_fake: bool


def check(settings: WeChatPaySettings, dev: bool, var_dir: str = "var") -> bool:
    """True when the fake must be used; ConfigError when a merchant is half-configured
    or missing outside dev mode, or (outside dev mode) a secret key is weak or a
    placeholder (:func:`kpay.core.auth.check_secret`)."""
    unconfigured = all(not getattr(settings, k) for k in MERCHANT_KEYS)
    if dev and unconfigured and not settings.api_base_url:
        return True
    if settings.api_version == "v3" and not settings.api_key:
        return False  # no v2 merchant: v2 is not used (v3 checks its own keys)
    required = PRODUCTION_KEYS if not dev else MERCHANT_KEYS
    missing = [k for k in required if not getattr(settings, k)]
    if missing:
        raise ConfigError(
            "[wechat_pay] missing " + ", ".join(missing) + " (set them in the config file or "
            "as KPAY_WECHAT_PAY__" + missing[0].upper() + "=...; in dev mode leave the "
            "merchant keys empty to use the local fake WeChat Pay)")
    if len(settings.api_key) != 32 and not dev:
        raise ConfigError("[wechat_pay] api_key must be the 32-character merchant API key")
    if not dev:
        for key in SECRET_KEYS:
            if getattr(settings, key):
                check_secret(f"[wechat_pay] {key}", getattr(settings, key), var_dir)
    return False


def page_origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, or None when it is not one (no host,
    a user name, a bad port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if (scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc
            or "\\" in url):
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def problems(settings: WeChatPaySettings, dev: bool, public_url: str) -> dict[str, str]:
    """What will fail when it is used, by key (logged loudly at start-up; the use itself
    then fails closed): a notify URL WeChat cannot reach, certificate files not there."""
    found = {}
    if not dev and not (settings.notify_url or public_url):
        found["notify_url"] = ("[wechat_pay] notify_url (or [server] public_url) is not set: "
                               "payments cannot be started")
    for key in ("mch_cert", "mch_key", "ca_bundle"):
        path = getattr(settings, key)
        if path and not os.path.isfile(path):
            found[key] = f"[wechat_pay] {key}: no file at {path}"
    return found


def with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def effective(settings: WeChatPaySettings, fake: dict[str, str] | None = None) -> Effective:
    """``fake``: the running fake's ``base_url``, ``appid``, ``mch_id``, ``api_key``,
    ``app_secret``, which replace the (empty) merchant keys."""
    if fake:
        base = with_slash(fake["base_url"])
        merchant = {k: fake[k] for k in ("appid", "mch_id", "api_key", "app_secret")}
        return Effective(settings.model_copy(update=merchant), base, base, base, True)
    return Effective(
        settings,
        with_slash(settings.api_base_url or REAL_PAY_API),
        with_slash(settings.oauth_api_base_url or REAL_API),
        with_slash(settings.oauth_base_url or REAL_OPEN),
        False,
    )
