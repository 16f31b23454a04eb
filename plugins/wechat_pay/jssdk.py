"""JS-SDK ``wx.config`` for H5 pages: ``GET /api/v1/wechat/jssdk?url=<page url>``.

The access token and the jsapi ticket are cached in MongoDB (``wechat_tokens``) until
shortly before they expire, shared by every node: WeChat limits how often they may be
fetched (2000 a day), so they are never fetched per request.

Only pages of the allowed origins are signed (:func:`allowed_origins`): ``[wechat_pay]
jssdk_origins``, ``[server] allowed_origins`` and ``public_url``, and in dev mode the
app's own ``http://127.0.0.1:<port>`` / ``http://localhost:<port>``.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from wechatpy.client import WeChatClient
from wechatpy.exceptions import WeChatClientException

from kpay.core.errors import ApiError, BadRequest
from kpay.core.web import BaseHandler, api
from plugins.wechat_pay.oauth import require_secret
from plugins.wechat_pay.responses import JsSdkConfig
from plugins.wechat_pay.settings import page_origin

if TYPE_CHECKING:
    from plugins.wechat_pay.client import WeChatRuntime

log = logging.getLogger("kpay.wechat_pay")

TOKENS = "wechat_tokens"
# Longest page URL signed (the query argument, fragment included).
MAX_URL_LENGTH = 2048
# Refresh this long before WeChat's expiry, so a cached value is never used stale.
MARGIN = timedelta(minutes=5)


class BaseUrlWeChatClient(WeChatClient):
    """wechatpy's client with a configurable base URL (its token URL is hard-coded)."""

    def __init__(self, runtime: WeChatRuntime, access_token: str | None = None) -> None:
        s = runtime.settings
        super().__init__(s.appid, s.app_secret, access_token=access_token,
                         timeout=s.http_timeout_seconds, auto_retry=False)
        self.API_BASE_URL = runtime.effective.api + "cgi-bin/"

    def fetch_access_token(self) -> dict[str, Any]:
        return self._fetch_access_token(
            url=self.API_BASE_URL + "token",
            params={"grant_type": "client_credential", "appid": self.appid,
                    "secret": self.secret})


async def cached(runtime: WeChatRuntime, name: str, fetch: Any) -> str:
    """The cached value ``name``, or ``await fetch()`` -> (value, expires_in) stored."""
    collection = runtime.app.store[TOKENS]
    key = f"{name}:{runtime.settings.appid}"
    now = runtime.app.clock.now()
    doc = await collection.find_one({"_id": key, "expires_at": {"$gt": now}})
    if doc is not None:
        return doc["value"]
    value, expires_in = await fetch()
    expires_at = now + timedelta(seconds=int(expires_in)) - MARGIN
    await collection.update_one({"_id": key},
                                {"$set": {"value": value, "expires_at": expires_at,
                                          "fetched_at": now}}, upsert=True)
    return value


async def jsapi_ticket(runtime: WeChatRuntime) -> str:
    # One fetch at a time on this node; the others wait and then read the cache.
    async with runtime.token_lock:
        async def fetch_token() -> tuple[str, int]:
            grant = await runtime.call(BaseUrlWeChatClient(runtime).fetch_access_token)
            return grant["access_token"], grant.get("expires_in", 7200)

        token = await cached(runtime, "access_token", fetch_token)

        async def fetch_ticket() -> tuple[str, int]:
            client = BaseUrlWeChatClient(runtime, access_token=token)
            answer = await runtime.call(client.jsapi.get_ticket, "jsapi")
            return answer["ticket"], answer.get("expires_in", 7200)

        return await cached(runtime, "jsapi_ticket", fetch_ticket)


def allowed_origins(runtime: WeChatRuntime) -> set[tuple[str, str, int]]:
    """(scheme, host, port) of the pages whose wx.config may be signed."""
    app = runtime.app
    server = app.settings.server
    origins = [*runtime.settings.jssdk_origins, *server.allowed_origins, server.public_url]
    if app.dev:
        origins += [f"http://127.0.0.1:{app.port}", f"http://localhost:{app.port}"]
    # "*" in [server] allowed_origins opens /ws to any origin, not the JS-SDK.
    return {origin for origin in map(page_origin, origins) if origin is not None}


class JsSdkHandler(BaseHandler):
    runtime: WeChatRuntime

    @api("JS-SDK wx.config for a page URL (signature with the cached jsapi ticket)",
         auth=False, query=("url",), response=JsSdkConfig)
    async def get(self) -> None:
        runtime = self.runtime
        require_secret(runtime)
        url = self.get_query_argument("url", "")
        if len(url) > MAX_URL_LENGTH:
            raise BadRequest(f"url is longer than {MAX_URL_LENGTH} characters",
                             code="invalid_field", field="url")
        url = url.split("#", 1)[0]
        origin = page_origin(url)
        if origin is None:
            raise BadRequest("url must be the page's full http(s) URL", code="invalid_field",
                             field="url")
        if origin not in allowed_origins(runtime):
            raise BadRequest("url is not a page of an allowed JS-SDK origin (see [wechat_pay] "
                             "jssdk_origins)", code="url_not_allowed", field="url")
        try:
            ticket = await jsapi_ticket(runtime)
        except (WeChatClientException, OSError, KeyError) as e:
            # The error may quote the request URL, with the AppSecret in its query: it is
            # logged (redacted), never sent to the browser.
            log.warning("wechat_pay: JS-SDK ticket unavailable: %s", e)
            raise ApiError("WeChat JS-SDK ticket unavailable", code="wechat_unavailable",
                           status=502) from None
        nonce = secrets.token_hex(8)
        timestamp = int(runtime.app.clock.time())
        signature = WeChatClient(runtime.settings.appid, "").jsapi.get_jsapi_signature(
            nonce, ticket, timestamp, url)
        self.write_json({"appId": runtime.settings.appid, "timestamp": timestamp,
                         "nonceStr": nonce, "signature": signature})
