"""WeChat Pay API v3: the merchant's keys, the signed HTTP client, and the plugin's
v3 runtime (client, provider, the local fake in dev mode).

Requests go through Tornado's AsyncHTTPClient; the RSA signing of each request (about
a millisecond) runs in the plugin's thread pool, so the event loop never waits on
WeChat or on the CPU. A successful answer's signature (and an error
answer's, when it is signed) is checked against WeChat's keys (v3_signing.PlatformKeys)
before anything in it is believed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import tornado.httpclient
from cryptography.hazmat.primitives.asymmetric import rsa

from kpay.core.auth import check_secret
from kpay.core.errors import ConfigError
from kpay.core.money.notify import notify_paths, transfer_notify_path
from plugins.wechat_pay import v3_signing
from plugins.wechat_pay.settings import REAL_PAY_API, WeChatPaySettings, with_slash
from plugins.wechat_pay.v3_signing import PlatformKeys, V3SignatureError

if TYPE_CHECKING:
    from plugins.wechat_pay.client import WeChatRuntime
    from plugins.wechat_pay.v3_fake import FakeWeChatV3
    from plugins.wechat_pay.v3_provider import WeChatPayV3Provider

log = logging.getLogger("kpay.wechat_pay.v3")

URL_NAME = "wechat-v3"
NOTIFY_PATH, REFUND_NOTIFY_PATH = notify_paths(URL_NAME)
TRANSFER_NOTIFY_PATH = transfer_notify_path(URL_NAME)
# Set only for v3: in dev mode with none of them, the local fake v3 server is used.
V3_ONLY_KEYS = ("mch_serial_no", "api_v3_key", "wechatpay_public_key_id",
                "wechatpay_public_key", "platform_certs", "v3_api_base_url")
V3_REQUIRED = ("appid", "mch_id", "mch_serial_no", "mch_key", "api_v3_key")


@dataclass(frozen=True)
class V3Merchant:
    """The merchant's v3 identity and keys, loaded. Secrets stay out of ``repr`` (and
    so out of logs)."""

    appid: str
    mchid: str
    serial_no: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    api_v3_key: str = field(repr=False)
    platform: PlatformKeys = field(repr=False)
    base_url: str = REAL_PAY_API
    uses_fake: bool = False


def check_v3(settings: WeChatPaySettings, dev: bool, var_dir: str = "var") -> bool:
    """True when the local fake v3 server must be used (dev mode, no v3 keys);
    ConfigError naming what is missing or weak otherwise."""
    if dev and not any(getattr(settings, k) for k in V3_ONLY_KEYS):
        return True
    missing = [k for k in V3_REQUIRED if not getattr(settings, k)]
    if not ((settings.wechatpay_public_key_id and settings.wechatpay_public_key)
            or settings.platform_certs):
        missing.append("wechatpay_public_key_id + wechatpay_public_key (or platform_certs)")
    if missing:
        raise ConfigError("[wechat_pay] api_version = \"v3\" needs " + ", ".join(missing)
                          + " (docs/wechat_pay.md, \"API v3\")")
    if len(settings.api_v3_key.encode()) != 32:
        raise ConfigError("[wechat_pay] api_v3_key must be the 32-character APIv3 key")
    if not dev:
        check_secret("[wechat_pay] api_v3_key", settings.api_v3_key, var_dir)
    return False


def read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"[wechat_pay] {key}: cannot read {path}: {e.strerror}") from None


def load_merchant(settings: WeChatPaySettings) -> V3Merchant:
    """The merchant's keys from the configured files; ConfigError naming the key whose
    file is missing or not a key (never its content)."""
    platform = PlatformKeys()
    try:
        private_key = v3_signing.load_private_key(read(settings.mch_key, "mch_key"))
    except ValueError:
        raise ConfigError("[wechat_pay] mch_key is not an RSA private key (PEM)") from None
    if settings.wechatpay_public_key_id and settings.wechatpay_public_key:
        try:
            platform.add_public_key(settings.wechatpay_public_key_id,
                                    read(settings.wechatpay_public_key, "wechatpay_public_key"))
        except ValueError:
            raise ConfigError("[wechat_pay] wechatpay_public_key is not an RSA public key "
                              "(PEM)") from None
    if settings.platform_certs:
        try:
            platform.add_certificates(read(settings.platform_certs, "platform_certs"))
        except ValueError:
            raise ConfigError("[wechat_pay] platform_certs holds no PEM certificate") from None
    return V3Merchant(settings.appid, settings.mch_id, settings.mch_serial_no, private_key,
                      settings.api_v3_key, platform,
                      with_slash(settings.v3_api_base_url or REAL_PAY_API))


class V3NoAnswer(Exception):
    """No answer to believe (unreachable, 5xx, a bad signature): what WeChat did with
    the request is unknown."""


class V3Refused(Exception):
    """WeChat answered (signed) that it refused the request: ``code`` is its error
    code (``ORDER_NOT_EXIST``, ``PARAM_ERROR``, ...), ``status`` the HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"WeChat Pay: {code} {message}".strip())
        self.status, self.code = status, code


class V3Client:
    """Signed JSON requests to the v3 API, answers verified."""

    def __init__(self, runtime: V3Runtime) -> None:
        self.runtime = runtime

    async def request(self, method: str, path: str,
                      body: dict[str, Any] | None = None,
                      extra_headers: dict[str, str] | None = None) -> dict[str, Any]:
        """``path`` from the API root (``v3/pay/transactions/native``, with its query).
        ``extra_headers``: e.g. ``Wechatpay-Serial`` naming the key an encrypted field
        used. Returns the answer's JSON ({} for 204); raises V3Refused or V3NoAnswer."""
        m = self.runtime.merchant
        data = b"" if body is None else json.dumps(body, ensure_ascii=False,
                                                   separators=(",", ":")).encode()
        headers = {"Authorization": await self.authorization(method, "/" + path, data),
                   "Accept": "application/json", "Content-Type": "application/json",
                   "User-Agent": "kpay", **(extra_headers or {})}
        s = self.runtime.wechat.settings
        request = tornado.httpclient.HTTPRequest(
            m.base_url + path, method=method, headers=headers,
            body=data if method != "GET" else None, request_timeout=s.http_timeout_seconds,
            ca_certs=s.ca_bundle or None)
        try:
            response = await tornado.httpclient.AsyncHTTPClient().fetch(request,
                                                                        raise_error=False)
        except OSError as e:
            raise V3NoAnswer(f"WeChat Pay did not answer: {e}") from None
        if response.code >= 500 or response.code == 599:
            raise V3NoAnswer(f"WeChat Pay answered HTTP {response.code}")
        raw = response.body or b""
        # A success must be signed. WeChat may leave an error answer unsigned (a request
        # whose own signature failed): one that is signed must verify, and one that is
        # not counts only as a refusal, which moves no money.
        if response.code < 400 or response.headers.get(v3_signing.SIGNATURE):
            try:
                m.platform.verify(response.headers, raw)
            except V3SignatureError as e:
                raise V3NoAnswer(f"WeChat Pay's answer is not believed: {e}") from None
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            raise V3NoAnswer("WeChat Pay's answer is not JSON") from None
        if response.code >= 400:
            raise V3Refused(response.code, str(answer.get("code", "")),
                            str(answer.get("message", "")))
        return answer

    async def authorization(self, method: str, path: str, data: bytes) -> str:
        """The ``Authorization`` header of a request to ``path`` (from the host's root,
        with its query), signed with the merchant's key in the thread pool."""
        m = self.runtime.merchant
        # WeChat judges the timestamp on real time: the wall clock on purpose.
        timestamp, nonce_str = str(int(time.time())), v3_signing.nonce()
        message = v3_signing.request_message(method, path, timestamp, nonce_str, data)
        signature = await self.runtime.wechat.call(v3_signing.rsa_sign, m.private_key, message)
        return v3_signing.authorization(m.mchid, m.serial_no, nonce_str, timestamp, signature)

    async def download(self, url: str, max_bytes: int) -> bytes:
        """GET a file WeChat named (a bill's ``download_url``), signed. The file itself
        is not signed by WeChat: the caller checks it against the hash that came with
        the (signed) URL. V3NoAnswer when unreachable, not 200, or over ``max_bytes``."""
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        s = self.runtime.wechat.settings
        chunks: list[bytes] = []
        size = 0

        def take(chunk: bytes) -> None:
            # Streamed so that a file over the limit is dropped before it fills memory.
            nonlocal size
            size += len(chunk)
            if size > max_bytes:
                raise TooBig(f"the file is over {max_bytes} bytes")
            chunks.append(chunk)

        request = tornado.httpclient.HTTPRequest(
            url, headers={"Authorization": await self.authorization("GET", path, b""),
                          "User-Agent": "kpay"},
            request_timeout=s.http_timeout_seconds, ca_certs=s.ca_bundle or None,
            streaming_callback=take)
        try:
            response = await tornado.httpclient.AsyncHTTPClient().fetch(request,
                                                                        raise_error=False)
        except (OSError, TooBig, tornado.httpclient.HTTPClientError) as e:
            # Raising TooBig in the callback closes the stream: say why it closed.
            why = f"the file is over {max_bytes} bytes" if size > max_bytes else e
            raise V3NoAnswer(f"WeChat Pay's download failed: {why}") from None
        if response.code != 200:
            raise V3NoAnswer(f"WeChat Pay answered the download with HTTP {response.code}")
        return b"".join(chunks)


class TooBig(Exception):
    pass


class V3Runtime:
    """The v3 side of the plugin for one app (inside WeChatRuntime, which keeps the
    thread pool and the settings)."""

    def __init__(self, wechat: WeChatRuntime) -> None:
        from plugins.wechat_pay.v3_provider import WeChatPayV3Provider

        self.wechat = wechat
        app = wechat.app
        self.needs_fake = check_v3(wechat.configured, app.dev, app.var_dir)
        self.merchant: V3Merchant | None = None
        self.fake: FakeWeChatV3 | None = None
        self.client = V3Client(self)
        self.provider: WeChatPayV3Provider = WeChatPayV3Provider(self)

    async def start(self) -> None:
        if not self.needs_fake:
            self.merchant = load_merchant(self.wechat.configured)
            return
        from plugins.wechat_pay.v3_fake import FakeWeChatV3

        s = self.wechat.settings  # the v2 fake's appid and mch_id, when it runs
        self.fake = FakeWeChatV3(appid=s.appid or None, mchid=s.mch_id or None)
        self.fake.now = self.wechat.app.clock.now  # its bills follow the dev clock
        await self.fake.start()
        self.merchant = self.fake.merchant()
        log.warning("wechat_pay: api_version v3 with no v3 merchant in dev mode: using the "
                    "LOCAL FAKE WeChat Pay v3 at %s. Never in production.", self.fake.base_url)

    async def stop(self) -> None:
        if self.fake is not None:
            await self.fake.stop()

    def notify_url(self) -> str:
        s = self.wechat.settings
        return s.v3_notify_url or self.wechat.public_url(NOTIFY_PATH)

    def refund_notify_url(self) -> str:
        s = self.wechat.settings
        return s.v3_refund_notify_url or self.wechat.public_url(REFUND_NOTIFY_PATH)

    def transfer_notify_url(self) -> str:
        s = self.wechat.settings
        return s.v3_transfer_notify_url or self.wechat.public_url(TRANSFER_NOTIFY_PATH)
