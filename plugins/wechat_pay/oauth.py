"""WeChat login for H5 pages (OAuth ``snsapi_base``/``snsapi_userinfo`` via wechatpy).

    GET /api/v1/wechat/oauth/start?redirect=/page&scope=snsapi_base
        -> 302 to WeChat's authorize page, with a signed, single-use ``state`` that is
           also bound to this browser by a cookie (login CSRF cannot hand the victim
           someone else's code)
    GET /api/v1/wechat/oauth/callback?code=&state=
        -> exchanges the code for the openid, finds or creates the user (``openid`` on
           the users document), 302 to the redirect with ``#token=<kpay token>``
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from wechatpy.exceptions import WeChatOAuthException
from wechatpy.oauth import WeChatOAuth

from kpay.core.errors import ApiError, BadRequest
from kpay.core.store import IndexSpec
from kpay.core.web import BaseHandler, api

if TYPE_CHECKING:
    from plugins.wechat_pay.client import WeChatRuntime

STATES = "wechat_oauth_states"
INDEXES = [IndexSpec.of("users", "openid")]
STATE_TTL = timedelta(minutes=10)
COOKIE = "kpay_wechat_oauth"
COOKIE_PATH = "/api/v1/wechat/oauth"


class NotConfigured(ApiError):
    status, code = 503, "wechat_not_configured"


def require_secret(runtime: WeChatRuntime) -> None:
    if not runtime.settings.appid or not runtime.settings.app_secret:
        raise NotConfigured("WeChat login needs [wechat_pay] appid and app_secret")


def state_signature(runtime: WeChatRuntime, nonce: str) -> str:
    key = ("wechat-oauth-state:" + runtime.app.tokens.secret).encode("utf-8")
    return hmac.new(key, nonce.encode("ascii"), hashlib.sha256).hexdigest()[:32]


def safe_redirect(runtime: WeChatRuntime, redirect: str) -> str:
    """Only back to our own pages (a path) or a configured origin: no open redirect."""
    if redirect.startswith("/") and not redirect.startswith("//") and "\\" not in redirect:
        return redirect
    allowed = [*runtime.settings.oauth_redirect_allow, runtime.app.settings.server.public_url]
    parts = urlsplit(redirect)
    if parts.scheme in ("http", "https") and any(
            a and redirect.startswith(a.rstrip("/") + "/") for a in allowed):
        return redirect
    raise BadRequest("redirect must be a path on this site or an allowed origin",
                     code="invalid_redirect", field="redirect")


def oauth_client(runtime: WeChatRuntime, scope: str = "snsapi_base", state: str = "") -> Any:
    client = WeChatOAuth(runtime.settings.appid, runtime.settings.app_secret,
                         runtime.oauth_callback_url(), scope=scope, state=state)
    # Instance attributes: the fake (or a proxy) can serve these in tests and demos.
    client.API_BASE_URL = runtime.effective.api
    client.OAUTH_BASE_URL = runtime.effective.open + "connect/"
    return client


class OAuthStartHandler(BaseHandler):
    runtime: WeChatRuntime

    @api("Start WeChat login: 302 to WeChat's authorize page", auth=False,
         query=("redirect", "scope"))
    async def get(self) -> None:
        runtime = self.runtime
        require_secret(runtime)
        redirect = safe_redirect(runtime, self.get_query_argument("redirect", "/"))
        scope = self.get_query_argument("scope", runtime.settings.oauth_scope)
        if scope not in ("snsapi_base", "snsapi_userinfo"):
            raise BadRequest("scope is snsapi_base or snsapi_userinfo", code="invalid_field",
                             field="scope")
        nonce = secrets.token_hex(16)
        now = runtime.app.clock.now()
        await runtime.app.store[STATES].insert_one(
            {"_id": nonce, "redirect": redirect, "scope": scope, "created_at": now,
             "expires_at": now + STATE_TTL})
        state = nonce + state_signature(runtime, nonce)  # 64 hex: within WeChat's 128
        self.set_cookie(COOKIE, nonce, path=COOKIE_PATH, httponly=True, samesite="Lax",
                        expires_days=STATE_TTL.total_seconds() / 86400,
                        secure=self.request.protocol == "https")
        self.redirect(oauth_client(runtime, scope, state).authorize_url)


class OAuthCallbackHandler(BaseHandler):
    runtime: WeChatRuntime

    @api("WeChat login callback: exchange the code, 302 back with #token=", auth=False,
         query=("code", "state"))
    async def get(self) -> None:
        runtime = self.runtime
        require_secret(runtime)
        code = self.get_query_argument("code", "")
        state = self.get_query_argument("state", "")
        if not code:
            raise BadRequest("the user did not allow the login (no code)", code="oauth_denied")
        pending = await self.claim_state(state)
        client = oauth_client(runtime, pending["scope"])
        try:
            grant = await runtime.call(client.fetch_access_token, code)
            profile = {}
            if pending["scope"] == "snsapi_userinfo":
                profile = await runtime.call(client.get_user_info, grant["openid"],
                                             grant["access_token"])
        except (WeChatOAuthException, OSError) as e:
            raise ApiError(f"WeChat login failed: {e}", code="oauth_failed", status=502) from None
        user = await find_or_create_user(runtime, grant["openid"], profile)
        token = runtime.app.tokens.issue(user["_id"], user.get("role", "student"))
        self.clear_cookie(COOKIE, path=COOKIE_PATH)
        target = pending["redirect"].split("#", 1)[0]
        self.redirect(target + "#" + urlencode({"token": token, "user_id": user["_id"]}))

    async def claim_state(self, state: str) -> dict[str, Any]:
        """The state must be ours (signature), this browser's (cookie), unexpired, and
        unused (deleted as it is read)."""
        nonce, signature = state[:32], state[32:]
        cookie = self.get_cookie(COOKIE, "")
        if (len(state) != 64
                or not hmac.compare_digest(signature, state_signature(self.runtime, nonce))
                or not hmac.compare_digest(cookie.encode(), nonce.encode())):
            raise BadRequest("invalid or foreign OAuth state", code="invalid_state")
        pending = await self.runtime.app.store[STATES].find_one_and_delete({"_id": nonce})
        if pending is None or pending["expires_at"] < self.runtime.app.clock.now():
            raise BadRequest("OAuth state expired or already used", code="invalid_state")
        return pending


async def find_or_create_user(runtime: WeChatRuntime, openid: str,
                              profile: dict[str, Any]) -> dict[str, Any]:
    users = runtime.app.store["users"]
    changes: dict[str, Any] = {"openid": openid}
    if profile.get("nickname"):
        changes["wechat_nickname"] = profile["nickname"]
    existing = await users.find_one_and_update({"openid": openid}, {"$set": changes},
                                               return_document=True)
    if existing is not None:
        return existing
    # A new WeChat user: the id is derived from the openid, so two concurrent first
    # logins upsert one document instead of creating two users.
    user_id = "wx_" + hashlib.sha256(openid.encode()).hexdigest()[:20]
    await users.update_one(
        {"_id": user_id},
        {"$set": changes, "$setOnInsert": {"role": "student", "created_at": runtime.app.clock.now(),
                                           "name": profile.get("nickname") or "微信用户"}},
        upsert=True)
    return await users.find_one({"_id": user_id})
