"""Security headers on every response: a Content-Security-Policy the pages pass (no
inline script; media from ``[server] media_origins``), nosniff, a referrer policy, and no
server version (docs/configuration.md, "Security headers")."""

from __future__ import annotations

import re

import tornado.web

# Host[:port] as it may appear in a CSP source (anything else in a Host header is left out).
CSP_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


def content_security_policy(media_origins: tuple[str, ...] | list[str], host: str = "") -> str:
    """The Content-Security-Policy of every response (the pages are what it is for).

    No inline script and no eval anywhere: every script is a file under /static/.
    Images and audio/video may come from ``[server] media_origins`` (rooms and lessons
    show media hosted elsewhere); images also from ``data:`` (the pages' empty favicon,
    ``<link rel="icon" href="data:,">``). Fetches and the socket go to this server only:
    ``'self'`` plus ws:/wss: of the requested host, spelled out for browsers (older
    WebKit, as in WeChat on iOS) where ``'self'`` does not cover WebSocket URLs.
    """
    media = " ".join(media_origins)
    connect = "'self'"
    if host and CSP_HOST.fullmatch(host):
        connect += f" ws://{host} wss://{host}"
    return "; ".join([
        "default-src 'self'",
        # WeChat's JS-SDK (jweixin), loaded by pages inside WeChat (static/js/wechat.js).
        "script-src 'self' https://res.wx.qq.com",
        # The pages have no style attributes or <style> elements; scripts set sizes
        # through element.style (CSSOM), which style-src does not restrict.
        "style-src 'self'",
        f"img-src {media} data:",
        f"media-src {media}",
        f"connect-src {connect}",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def security_headers(media_origins: tuple[str, ...] | list[str], host: str = "") -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(media_origins, host),
        "X-Content-Type-Options": "nosniff",
        # Other origins (media hosts, WeChat) learn a page's origin, never its path or query.
        "Referrer-Policy": "strict-origin-when-cross-origin",
    }


class SecurityHeaders(tornado.web.OutputTransform):
    """Adds :func:`security_headers` to a response (a handler's own value wins) and drops
    Tornado's ``Server: TornadoServer/<version>``."""

    def __init__(self, request: tornado.httputil.HTTPServerRequest,
                 media_origins: tuple[str, ...] = ()) -> None:
        self.request = request
        self.media_origins = media_origins

    def transform_first_chunk(self, status_code: int, headers: tornado.httputil.HTTPHeaders,
                              chunk: bytes, finishing: bool
                              ) -> tuple[int, tornado.httputil.HTTPHeaders, bytes]:
        headers.pop("Server", None)
        for name, value in security_headers(self.media_origins, self.request.host).items():
            if name not in headers:
                headers[name] = value
        return status_code, headers, chunk
