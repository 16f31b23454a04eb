"""Logging: the access log without query strings, and no secret from a URL in any line
(OAuth codes and states, tokens, tickets, signatures: docs/operations.md "Logs")."""

from __future__ import annotations

import logging
import re

import tornado.web

access_log = logging.getLogger("tornado.access")

#: Query parameters whose values never reach a log line (OAuth codes and states, tokens,
#: tickets, signatures, secrets), matched case-insensitively.
SECRET_PARAMETERS = ("code", "state", "token", "access_token", "refresh_token", "ticket",
                     "jsapi_ticket", "sign", "paySign", "signature", "secret", "key")
_NAMES = "|".join(SECRET_PARAMETERS)
# name=value in a query string ("?code=...&"), and inside a percent-encoded URL carried in
# another one ("%3Fcode%3D...%26").
_PLAIN = re.compile(r"([?&;](?:" + _NAMES + r")=)[^&#\s'\"<>]*", re.IGNORECASE)
_ENCODED = re.compile(r"((?:%3F|%26)(?:" + _NAMES + r")%3D)"
                      r"(?:[^&#%\s'\"<>]|%(?!26|23)[0-9A-F]{2})*", re.IGNORECASE)
REDACTED = "[redacted]"
#: Loggers that print request URIs: Tornado's (its 4xx warnings and 5xx errors quote
#: the URI and the request), urllib3's request lines (wechatpy calls WeChat with the
#: code, AppSecret or token in the query) and kpay's WeChat plugin.
URI_LOGGERS = ("tornado.access", "tornado.application", "tornado.general",
               "urllib3.connectionpool", "kpay", "kpay.web", "kpay.wechat_pay")


def redact(text: str) -> str:
    """``text`` with the values of :data:`SECRET_PARAMETERS` in URLs replaced."""
    if "=" not in text and "%3d" not in text.lower():
        return text
    return _ENCODED.sub(r"\1" + REDACTED, _PLAIN.sub(r"\1" + REDACTED, text))


class RedactSecrets(logging.Filter):
    """Redacts secret query values in a record's message and traceback text, in place,
    before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


REDACT_SECRETS = RedactSecrets()


def install_redaction(*targets: logging.Logger | logging.Handler) -> None:
    """Put the :class:`RedactSecrets` filter on these loggers or handlers (once each)."""
    for target in targets:
        if REDACT_SECRETS not in target.filters:
            target.addFilter(REDACT_SECRETS)


install_redaction(*map(logging.getLogger, URI_LOGGERS))


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log line without the query string: /ws?token=... must not be logged.

    Every other line that may quote a request URI goes through :class:`RedactSecrets`."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    access_log.log(level, "%d %s %s (%s) %.2fms", status, request.method, request.path,
                   request.remote_ip, 1000.0 * request.request_time())


def configure_logging(level: str) -> None:
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Every line, whichever logger wrote it, has secret query values redacted.
    install_redaction(*logging.getLogger().handlers)
