"""The ``[wechat_notify]`` config section (docs/wechat_notify.md "Configuration").

Each forwarded kind names how it goes (``template``: a 公众号 template message, for
service notices only; ``subscribe``: a 订阅消息, sent only to users who consented to its
template), its template id and which notification field fills each template keyword.
A kind that is not configured, or has no template id, is not forwarded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kpay.core.config import Section

if TYPE_CHECKING:
    from kpay.core.app import KPay

SECTION = "wechat_notify"

#: The kinds this plugin may forward. ``audience_message`` (operators' and consultants'
#: messages to a segment, docs/audience.md) is marketing: WeChat forbids it as a
#: template message, so it may only be configured in subscribe mode.
KINDS = ("lesson_unlocked", "consult_request", "consult_accepted", "room_starting",
         "order_refunded", "payout_waiting_confirmation", "audience_message")
SUBSCRIBE_ONLY = ("audience_message",)
REAL_API = "https://api.weixin.qq.com/"


class KindSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: str = Field("template", pattern="^(template|subscribe)$")
    template_id: str = Field("", max_length=128, pattern=r"^[A-Za-z0-9_\-]*$")
    # Template keyword -> a field of the notification: "title" or "body" (its Chinese
    # wording, docs/plugins.md describe_notification), "time" (when it was told, Beijing
    # time) or a key of its data. WeChat cuts nothing: values are cut here to 20
    # characters (thing.DATA's limit), or 200 for "body".
    fields: dict[str, str] = Field(default_factory=dict, max_length=10)


class WeChatNotifySettings(Section):
    # The 公众号 the messages come from; empty: [wechat_pay] appid / app_secret. In dev
    # mode with neither (and no api_base_url) a local fake WeChat records the messages.
    appid: str = ""
    app_secret: str = Field("", repr=False)  # a secret: kept out of reprs and logs
    api_base_url: str = ""
    # The 公众号's message push (服务器配置 → 令牌 Token, 明文模式): WeChat's signed
    # word on what users chose in subscription dialogs (docs/wechat_notify.md "Consents
    # from WeChat"). Empty: the route is not served.
    message_token: str = Field("", repr=False, max_length=32, pattern=r"^([A-Za-z0-9]{3,32})?$")
    # Per kind (one of KINDS): [wechat_notify.kinds.lesson_unlocked] mode, template_id,
    # fields.
    kinds: dict[str, KindSettings] = {}
    http_timeout_seconds: float = Field(5.0, gt=0, le=30)
    # A send WeChat provably did not accept is retried by the wechat_notify.retry job at
    # most this many times in all, waiting retry_seconds * 2^(attempt-1) between them.
    max_attempts: int = Field(5, ge=1, le=20)
    retry_seconds: int = Field(30, ge=1, le=3600)

    @field_validator("kinds")
    @classmethod
    def known_kinds(cls, kinds: dict[str, KindSettings]) -> dict[str, KindSettings]:
        for kind, setting in kinds.items():
            if kind not in KINDS:
                raise ValueError(f"{kind!r} is not a kind wechat_notify forwards "
                                 f"({', '.join(KINDS)})")
            if kind in SUBSCRIBE_ONLY and setting.mode != "subscribe":
                raise ValueError(f"{kind!r} is marketing: WeChat allows it only as a "
                                 "subscription message (mode = \"subscribe\")")
        return kinds


def settings_of(app: KPay) -> WeChatNotifySettings:
    return app.settings.section(SECTION)


def credentials(app: KPay) -> tuple[str, str]:
    """(appid, app_secret): this section's, else [wechat_pay]'s (the same 公众号)."""
    own = settings_of(app)
    if own.appid:
        return own.appid, own.app_secret
    try:
        pay: Any = app.settings.section("wechat_pay")
    except KeyError:
        return "", ""
    return pay.appid, pay.app_secret


def subscribe_templates(app: KPay) -> set[str]:
    """Template ids a user may consent to: those of the kinds in subscribe mode."""
    return {k.template_id for k in settings_of(app).kinds.values()
            if k.mode == "subscribe" and k.template_id}
