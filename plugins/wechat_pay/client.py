"""The plugin's runtime for one app: the wechatpy clients, the thread pool they run in,
the effective configuration, and (dev mode without a merchant) the local fake server.

wechatpy's HTTP calls block (requests), so every one goes through
:meth:`WeChatRuntime.call`, which runs it in a bounded thread pool: the event loop
never waits on WeChat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay

from kpay.core.errors import PaymentProviderError
from kpay.core.money.notify import notify_paths
from kpay.core.money.providers import PaymentProvider
from plugins.wechat_pay import settings as settings_module
from plugins.wechat_pay.settings import Effective, WeChatPaySettings
from plugins.wechat_pay.signing import XmlError, parse_xml, verify

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from plugins.wechat_pay.fake import FakeWeChat
    from plugins.wechat_pay.provider import WeChatPayProvider
    from plugins.wechat_pay.v3_client import V3Runtime

log = logging.getLogger("kpay.wechat_pay")

T = TypeVar("T")

# The provider's url_name: the core serves its notify routes (kpay/core/money/notify.py).
URL_NAME = "wechat"
NOTIFY_PATH, REFUND_NOTIFY_PATH = notify_paths(URL_NAME)
OAUTH_CALLBACK_PATH = "/api/v1/wechat/oauth/callback"


class UntrustedAnswer(WeChatPayException):
    """An answer that cannot be believed (unreadable, wrong signature, another merchant):
    what WeChat did with the request is unknown."""


class SignedWeChatPay(WeChatPay):
    """wechatpy's WeChatPay v2 client, pointed at a configurable base URL, which also
    parses answers safely (defusedxml) and checks their signature: wechatpy does
    neither, and an unsigned "SUCCESS" must never count as one."""

    def __init__(self, eff: Effective) -> None:
        s = eff.settings
        super().__init__(appid=s.appid, api_key=s.api_key, mch_id=s.mch_id,
                         timeout=s.http_timeout_seconds)
        # The merchant certificate goes only with secapi/* calls (refunds), which need it;
        # wechatpy would send it with every call.
        self.cert_pair = (s.mch_cert, s.mch_key) if s.mch_cert and s.mch_key else None
        self.API_BASE_URL = eff.pay_api
        self.ca_bundle = s.ca_bundle
        # WeChat signs its answer as the request was signed, without saying how.
        self.answer_sign_type = s.sign_type

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        if self.ca_bundle:
            # Per request: a session-wide verify would lose to REQUESTS_CA_BUNDLE.
            kwargs.setdefault("verify", self.ca_bundle)
        if self.cert_pair and url_or_endpoint.startswith("secapi/"):
            kwargs["cert"] = self.cert_pair
        return super()._request(method, url_or_endpoint, **kwargs)

    def _handle_result(self, res: Any) -> dict[str, str]:
        res.encoding = "utf-8"
        try:
            data = parse_xml(res.content)
        except XmlError as e:
            raise UntrustedAnswer("FAIL", return_msg=f"unreadable answer: {e}",
                                     client=self, request=res.request, response=res) from None
        if data.get("return_code") != "SUCCESS":
            raise WeChatPayException(data.get("return_code", "FAIL"),
                                     return_msg=data.get("return_msg"), client=self,
                                     request=res.request, response=res)
        if not verify(data, self.api_key, (self.answer_sign_type,)):
            raise UntrustedAnswer("FAIL", return_msg="answer signature is wrong",
                                     client=self, request=res.request, response=res)
        if data.get("appid", self.appid) != self.appid or data.get("mch_id") != self.mch_id:
            raise UntrustedAnswer("FAIL", return_msg="answer is for another merchant",
                                     client=self, request=res.request, response=res)
        if data.get("result_code") != "SUCCESS":
            raise WeChatPayException("SUCCESS", data.get("result_code"), data.get("return_msg"),
                                     data.get("err_code"), data.get("err_code_des"),
                                     client=self, request=res.request, response=res)
        return data


class WeChatRuntime:
    """Everything the plugin keeps for one running app."""

    def __init__(self, app: KPay, configured: WeChatPaySettings) -> None:
        self.app = app
        self.configured = configured
        self.needs_fake = settings_module.check(configured, app.dev, app.var_dir)
        self.effective: Effective = settings_module.effective(configured)
        self.fake: FakeWeChat | None = None
        # Settings that will fail when used (found at start-up), by key.
        self.problems: dict[str, str] = {}
        self.executor = ThreadPoolExecutor(max_workers=configured.http_workers,
                                           thread_name_prefix="wechat-http")
        self.pay = SignedWeChatPay(self.effective)
        # One fetch of the access token / jsapi ticket at a time per node.
        self.token_lock = asyncio.Lock()
        # Imported here: the provider module imports this one (UntrustedAnswer).
        from plugins.wechat_pay.provider import WeChatPayProvider

        self.provider: WeChatPayProvider = WeChatPayProvider(self)
        # API v3 (api_version = "v3"): new orders go there; v2 answers for its own.
        self.v3: V3Runtime | None = None
        if configured.api_version == "v3":
            from plugins.wechat_pay.v3_client import V3Runtime

            self.v3 = V3Runtime(self)
            self.provider.creates_orders = False

    @property
    def settings(self) -> WeChatPaySettings:
        return self.effective.settings

    def providers(self) -> list[PaymentProvider]:
        """The providers to register: v2, or (api_version v3) v3 creating new orders and
        v2 answering for the orders it created while its merchant stays configured."""
        if self.v3 is None:
            return [self.provider]
        v2_configured = self.needs_fake or bool(self.configured.api_key)
        return [self.v3.provider, *([self.provider] if v2_configured else [])]

    async def start(self) -> None:
        self.problems = settings_module.problems(self.configured, self.app.dev,
                                                 self.app.settings.server.public_url)
        for problem in self.problems.values():
            log.error("wechat_pay is misconfigured: %s", problem)
        if self.needs_fake:
            from plugins.wechat_pay.fake import FakeWeChat

            self.fake = FakeWeChat(retry_scale=1.0)
            await self.fake.start()
            self.effective = settings_module.effective(self.configured, self.fake.credentials())
            self.pay = SignedWeChatPay(self.effective)
            log.warning(
                "wechat_pay: no merchant configured and dev mode is on: using the LOCAL FAKE "
                "WeChat Pay at %s (pay a pending order with POST %s_fake/pay?out_trade_no=... or "
                "the dev route /api/v1/dev/orders/{id}/pay). Never in production.",
                self.fake.base_url, self.fake.base_url)
        if self.v3 is not None:
            await self.v3.start()

    async def stop(self) -> None:
        if self.v3 is not None:
            await self.v3.stop()
        if self.fake is not None:
            await self.fake.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking wechatpy call in the bounded pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def public_url(self, path: str) -> str:
        base = self.app.settings.server.public_url.rstrip("/")
        if not base and not self.app.dev:
            raise PaymentProviderError(
                "[server] public_url (or [wechat_pay] notify_url) is not configured")
        if not base:
            # Dev/test without a public URL: WeChat cannot reach us, the fake can.
            base = f"http://127.0.0.1:{self.app.port}"
        return base + path

    def notify_url(self) -> str:
        return self.settings.notify_url or self.public_url(NOTIFY_PATH)

    def refund_notify_url(self) -> str:
        return self.settings.refund_notify_url or self.public_url(REFUND_NOTIFY_PATH)

    def oauth_callback_url(self) -> str:
        return self.public_url(OAUTH_CALLBACK_PATH)
