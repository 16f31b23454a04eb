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
import logging
import re
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

from wechatpy.exceptions import WeChatOAuthException
from wechatpy.oauth import WeChatOAuth

from kpay.core.errors import ApiError, BadRequest
from kpay.core.store import IndexSpec
from kpay.core.users import issue_token
from kpay.core.web import BaseHandler, api

if TYPE_CHECKING:
    from plugins.wechat_pay.client import WeChatRuntime

STATES = "wechat_oauth_states"
INDEXES: list[IndexSpec] = []  # the users' openid index is the core's (kpay/core/users.py)
STATE_TTL = timedelta(minutes=10)
COOKIE = "kpay_wechat_oauth"
#: A state we issued: 32 hex of nonce, 32 of signature (anything else is refused first).
STATE_FORMAT = re.compile(r"[0-9a-f]{64}")
COOKIE_PATH = "/api/v1/wechat/oauth"


class NotConfigured(ApiError):
    status, code = 503, "wechat_not_configured"


def require_secret(runtime: WeChatRuntime) -> None:
    if not runtime.settings.appid or not runtime.settings.app_secret:
        raise NotConfigured("WeChat login needs [wechat_pay] appid and app_secret")


def state_signature(runtime: WeChatRuntime, nonce: str) -> str:
    key = ("wechat-oauth-state:" + runtime.app.tokens.secret).encode("utf-8")
    return hmac.new(key, nonce.encode("ascii"), hashlib.sha256).hexdigest()[:32]


# The login token rides on this redirect (``#token=``), so it must never leave for
# another site. Browsers forgive a lot when they parse a URL (WHATWG): they drop tabs
# and newlines anywhere, trim spaces and control characters, read ``\`` as ``/``, so
# ``/\t/evil.example`` or ``/\evil.example`` becomes ``//evil.example``. Rather than
# copy that parser, accept only printable ASCII a URL may carry as is (no whitespace,
# no controls, no backslash, no quotes), where the browser's reading is the plain one.
REDIRECT_MAX = 2000
REDIRECT_CHARS = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@/?#%-]+")
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
DEFAULT_PORTS = {"http": 80, "https": 443}


def safe_path(path: str) -> bool:
    """An absolute path that stays one even percent-decoded: no ``//``, no backslash, no
    control character, no ``.``/``..`` segment (a page or proxy that decodes it once
    must not find another host or climb out of an allowed prefix)."""
    decoded = unquote(path)
    return (decoded.startswith("/") and "//" not in decoded and "\\" not in decoded
            and not any(c < " " or c == "\x7f" for c in decoded)
            and not {".", ".."} & set(decoded.split("/")))


def url_origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL without userinfo, else None."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def safe_redirect(runtime: WeChatRuntime, redirect: str) -> str:
    """Only back to our own pages (a path) or a configured origin: no open redirect."""
    if (len(redirect) <= REDIRECT_MAX and REDIRECT_CHARS.fullmatch(redirect)
            and not BAD_ESCAPE.search(redirect)):
        if redirect.startswith("/"):
            if not redirect.startswith("//") and safe_path(re.split("[?#]", redirect)[0]):
                return redirect
        elif (origin := url_origin(redirect)) is not None:
            # The exact scheme, host and port of an allowed entry (a prefix match on
            # the string would let ``https://good.example.evil.com`` through), and
            # under the entry's path, if it has one.
            path = urlsplit(redirect).path or "/"
            allowed = [*runtime.settings.oauth_redirect_allow,
                       runtime.app.settings.server.public_url]
            if safe_path(path) and any(
                    a and url_origin(a) == origin
                    and path.startswith(urlsplit(a).path.rstrip("/") + "/") for a in allowed):
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
         query=("redirect", "scope"), status=302)
    async def get(self) -> None:
        runtime = self.runtime
        require_secret(runtime)
        # Unstripped: judge the value exactly as the browser will get it back.
        redirect = safe_redirect(runtime, self.get_query_argument("redirect", "/", strip=False))
        scope = self.get_query_argument("scope", runtime.settings.oauth_scope)
        if scope not in ("snsapi_base", "snsapi_userinfo"):
            raise BadRequest("scope is snsapi_base or snsapi_userinfo", code="invalid_field",
                             field="scope")
        nonce = secrets.token_hex(16)
        now = runtime.app.clock.now()
        # Expiry is judged on the app's clock (claim_state); the TTL index only clears
        # old states, on the database's own clock (``stored_at``), so a dev or test
        # clock set in the past cannot have a fresh state purged under the user.
        await runtime.app.store[STATES].update_one(
            {"_id": nonce},
            {"$set": {"redirect": redirect, "scope": scope, "created_at": now,
                      "expires_at": now + STATE_TTL},
             "$currentDate": {"stored_at": True}}, upsert=True)
        state = nonce + state_signature(runtime, nonce)  # 64 hex: within WeChat's 128
        self.set_cookie(COOKIE, nonce, path=COOKIE_PATH, httponly=True, samesite="Lax",
                        expires_days=STATE_TTL.total_seconds() / 86400,
                        secure=self.request.protocol == "https")
        self.redirect(oauth_client(runtime, scope, state).authorize_url)


class OAuthCallbackHandler(BaseHandler):
    runtime: WeChatRuntime

    @api("WeChat login callback: exchange the code, 302 back with #token=", auth=False,
         query=("code", "state"), status=302)
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
            # The error may quote WeChat's URL with the code and the AppSecret in its
            # query: logged (redacted, kpay.core.logs.RedactSecrets), never sent back.
            logging.getLogger("kpay.wechat_pay").warning("wechat_pay: OAuth login failed: %s", e)
            raise ApiError("WeChat login failed", code="oauth_failed", status=502) from None
        user = await find_or_create_user(runtime, grant["openid"], profile)
        token = issue_token(runtime.app.tokens, user)
        self.clear_cookie(COOKIE, path=COOKIE_PATH)
        target = pending["redirect"].split("#", 1)[0]
        self.redirect(target + "#" + urlencode({"token": token, "user_id": user["_id"]}))

    async def claim_state(self, state: str) -> dict[str, Any]:
        """The state must be ours (signature), this browser's (cookie), unexpired, and
        unused (deleted as it is read)."""
        nonce, signature = state[:32], state[32:]
        cookie = self.get_cookie(COOKIE, "")
        if (not STATE_FORMAT.fullmatch(state)
                or not hmac.compare_digest(signature, state_signature(self.runtime, nonce))
                or not hmac.compare_digest(cookie.encode(), nonce.encode())):
            raise BadRequest("invalid or foreign OAuth state", code="invalid_state")
        pending = await self.runtime.app.store[STATES].find_one_and_delete({"_id": nonce})
        if pending is None or pending["expires_at"] < self.runtime.app.clock.now():
            raise BadRequest("OAuth state expired or already used", code="invalid_state")
        return pending


async def find_or_create_user(runtime: WeChatRuntime, openid: str,
                              profile: dict[str, Any]) -> dict[str, Any]:
    return await runtime.app.users.sign_in_wechat(openid, profile.get("nickname"))
