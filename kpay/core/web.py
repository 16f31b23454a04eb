"""The base of every HTTP handler: JSON in and out, the error envelope, auth, routes.

Handlers stay small: parse with :meth:`BaseHandler.body` (a pydantic model), check
the caller with :meth:`BaseHandler.require_user`, do the work, :meth:`write_json`.
Any :class:`kpay.core.errors.ApiError` raised becomes the error envelope.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import tornado.httputil
import tornado.web
from pydantic import BaseModel, ValidationError

from kpay.core import metrics
from kpay.core.auth import TokenClaims, User
from kpay.core.digits import parse_digits
from kpay.core.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
)
from kpay.core.jsonio import json_default, parse_json
from kpay.core.ratelimit import check_limit_class, limit_key, retry_after, route_class
from kpay.core.security import SecurityHeaders, security_headers
from kpay.core.users import authenticate

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.web")

M = TypeVar("M", bound=BaseModel)

PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    """An HTTP route: ``path`` with ``{name}`` placeholders, served by ``handler``.

    ``tags`` group it in the OpenAPI document. ``limit`` names its rate limit class
    (kpay/core/ratelimit.py) when not its methods' ("read" for GET, "write" for the
    others): "read", "write", "login", "orders" or "none" (not limited).
    """

    path: str
    handler: type[tornado.web.RequestHandler]
    kwargs: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    limit: str | None = None

    def __post_init__(self) -> None:
        check_limit_class(self.limit)

    def pattern(self) -> str:
        return PLACEHOLDER.sub(r"(?P<\1>[^/]+)", self.path) + "$"


JSON_MEDIA_TYPE = "application/json"


@dataclass(frozen=True)
class Operation:
    """OpenAPI facts about one handler method, set with :func:`api`.

    The success answer is ``status`` with a JSON body described by the pydantic model
    ``response``; or, when ``media_type`` is not JSON, a body of that type (``/metrics``
    text, WeChat's notify XML); a 3xx ``status`` is a redirect (a ``Location``, no
    body). ``responses`` adds other statuses answered with a body of their own model
    rather than the error envelope (``/healthz``'s 503). Refusals are the JSON error
    envelope, or a body of ``error_media_type`` as well when the route answers errors
    in another format (the notify routes' XML).
    """

    summary: str
    body: type[BaseModel] | None = None
    auth: bool = True
    roles: tuple[str, ...] = ()
    status: int = 200
    query: tuple[str, ...] = ()
    response: type[BaseModel] | None = None
    media_type: str = JSON_MEDIA_TYPE
    responses: tuple[tuple[int, type[BaseModel]], ...] = ()
    error_media_type: str = JSON_MEDIA_TYPE
    #: The request body's media type when ``body`` describes something else than JSON
    #: (WeChat's notify XML).
    body_media_type: str = JSON_MEDIA_TYPE
    #: The rate limit class (kpay/core/ratelimit.py) when not the route's or the
    #: method's: "read", "write", "login", "orders", or "none" (not limited).
    limit: str | None = None


def api(summary: str, *, body: type[BaseModel] | None = None, auth: bool = True,
        roles: tuple[str, ...] = (), status: int = 200,
        query: tuple[str, ...] = (), response: type[BaseModel] | None = None,
        media_type: str = JSON_MEDIA_TYPE,
        responses: dict[int, type[BaseModel]] | None = None,
        error_media_type: str = JSON_MEDIA_TYPE,
        limit: str | None = None,
        body_media_type: str = JSON_MEDIA_TYPE) -> Callable[[Callable], Callable]:
    """Describe a handler method for the OpenAPI document: ``body`` and ``response``
    are pydantic models of the request and of the success (``status``) answer.
    ``limit`` names its rate limit class when not the route's or its method's."""
    check_limit_class(limit)

    def mark(method: Callable) -> Callable:
        method.__kpay_operation__ = Operation(  # type: ignore[attr-defined]
            summary, body, auth, roles, status, query, response=response,
            media_type=media_type, responses=tuple(sorted((responses or {}).items())),
            error_media_type=error_media_type, limit=limit,
            body_media_type=body_media_type)
        return method

    return mark


class BaseHandler(tornado.web.RequestHandler):
    kpay: KPay

    def initialize(self, **kwargs: Any) -> None:
        self.kpay = self.application.settings["kpay"]
        for name, value in kwargs.items():
            setattr(self, name, value)

    # -- input -------------------------------------------------------------

    def json(self) -> Any:
        if not self.request.body:
            return {}
        return parse_json(self.request.body)

    def body(self, model: type[M]) -> M:
        """Parse and validate the JSON body; 400 naming the first bad field."""
        data = self.json()
        if not isinstance(data, dict):
            raise BadRequest("body must be a JSON object", code="invalid_json")
        return validate(model, data)

    def query_int(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        # A minus sign where the range allows negatives; no "+", "_" or other digits.
        negative = low < 0 and raw.startswith("-")
        value = parse_digits(raw[1:] if negative else raw)
        if value is None:
            raise BadRequest(f"{name} must be an integer", code="invalid_field", field=name)
        value = -value if negative else value
        if not low <= value <= high:
            raise BadRequest(f"{name} must be between {low} and {high}",
                             code="invalid_field", field=name)
        return value

    # -- identity ----------------------------------------------------------

    async def prepare(self) -> None:
        """Read the caller's token and standing once, before the handler runs. A bad
        token is raised only where the user is needed (an ``@api`` mark with
        ``auth=True`` or ``roles``, or ``require_user``), so routes without auth ignore
        it. Then the request's rate limit is taken, and what the method's mark declares
        is enforced (401, 403) before the method runs."""
        # Counted until on_finish (which runs however the request ends): a stopping app
        # waits for these (kpay/core/lifecycle.py, ``drain``).
        self.kpay.requests_in_flight += 1
        self._in_flight = True
        self.token_claims: TokenClaims | None = None
        self._auth_error: ApiError | None = None
        header = self.request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            try:
                if scheme.lower() != "bearer" or not token.strip():
                    raise Unauthorized("Authorization must be 'Bearer <token>'",
                                       code="invalid_token")
                self.token_claims = await authenticate(self.kpay.tokens, self.kpay.users,
                                                       token.strip())
            except ApiError as e:
                self._auth_error = e
        self.take_rate_limit()
        operation = self.operation()
        if operation is not None and (operation.auth or operation.roles):
            # The mark is the contract the OpenAPI document publishes: enforced here,
            # so a handler cannot drift from it.
            self.require_user(*operation.roles)

    def operation(self) -> Operation | None:
        """The ``@api`` mark of the method this request calls, if it has one."""
        method = getattr(self, (self.request.method or "GET").lower(), None)
        return getattr(method, "__kpay_operation__", None)

    #: The rate limit class the route declared (``Route(limit=...)``), if any.
    route_limit: str | None = None

    def take_rate_limit(self) -> None:
        """429 ``rate_limited`` (with ``Retry-After``) when this request's bucket is empty
        (``[limits]``; classes and keys in kpay/core/ratelimit.py)."""
        limiter = self.kpay.limiter
        if not limiter.enabled:
            return
        method = self.request.method or "GET"
        operation = self.operation()
        declared = (operation.limit if operation is not None else None) or self.route_limit
        limit_class = route_class(getattr(self, "route_path", None) or self.request.path,
                                  method, declared)
        user_id = self.token_claims.user.id if self.token_claims is not None else None
        # request.remote_ip is already the client's ([server] trusted_proxies: client_ip).
        key = limit_key(limit_class, user_id, self.request.remote_ip or "",
                        operation.auth if operation is not None else True)
        if key is None:
            return
        wait = limiter.take(limit_class, key)
        if wait:
            seconds = retry_after(wait)
            raise RateLimited(f"too many requests; try again in {seconds} s",
                              retry_after=seconds)

    def get_current_user(self) -> User | None:
        if getattr(self, "_auth_error", None) is not None:
            raise self._auth_error
        claims = getattr(self, "token_claims", None)
        return claims.user if claims is not None else None

    def require_user(self, *roles: str) -> User:
        user = self.current_user
        if user is None:
            raise Unauthorized("a bearer token is required", code="unauthorized")
        if roles and not user.has_role(*roles):
            raise Forbidden(f"this needs the role {' or '.join(roles)}", code="forbidden")
        return user

    # -- output ------------------------------------------------------------

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, ensure_ascii=False, default=json_default))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        write_error_envelope(self, status_code, kwargs.get("exc_info"))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ApiError):
            # Expected refusals are not server errors: no traceback in the log.
            if self._finished:
                return
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def on_finish(self) -> None:
        if getattr(self, "_in_flight", False):
            self._in_flight = False
            self.kpay.requests_in_flight -= 1
        route = getattr(self, "route_path", None) or "unmatched"
        metrics.HTTP_REQUESTS.labels(self.request.method, route, str(self.get_status())).inc()


class KPayApplication(tornado.web.Application):
    """Tornado's application, answering an over-long request body with the 413 envelope,
    and adding the security headers to every response.

    Tornado's own ``max_body_size`` closes the connection without a response, which a
    client sees as a network error. Here a body over ``max_body_bytes`` is read and
    dropped chunk by chunk (never kept), and the client gets a proper answer.

    The security headers (:class:`SecurityHeaders`) are an output transform, so they reach
    every response whatever handler writes it: API, pages, errors, plugins' handlers.
    """

    def __init__(self, handlers: list[Any], max_body_bytes: int,
                 media_origins: list[str] | tuple[str, ...] = ("'self'", "https:"),
                 large_bodies: tuple[tuple[str, int], ...] = (),
                 **settings: Any) -> None:
        super().__init__(handlers, **settings)
        self.max_body_bytes = max_body_bytes
        # (path pattern, limit): routes whose bodies may be larger (media upload chunks).
        self.large_bodies = tuple((re.compile(p), limit) for p, limit in large_bodies)
        self.media_origins = tuple(media_origins)
        # Tornado makes each transform with ``transform(request)``: bind the origins.
        self.add_transform(functools.partial(SecurityHeaders,  # type: ignore[arg-type]
                                             media_origins=self.media_origins))

    def start_request(self, server_conn: object,
                      request_conn: tornado.httputil.HTTPConnection
                      ) -> tornado.httputil.HTTPMessageDelegate:
        inner = super().start_request(server_conn, request_conn)
        return BodyLimit(inner, request_conn, self.max_body_bytes, self.media_origins,
                         self.large_bodies)


class BodyLimit(tornado.httputil.HTTPMessageDelegate):
    """Passes a request through unless its body exceeds ``limit`` bytes (413), or its
    Host header is one Tornado refuses (400): either way the client gets the error
    envelope, not a bare status line."""

    def __init__(self, inner: tornado.httputil.HTTPMessageDelegate,
                 connection: tornado.httputil.HTTPConnection, limit: int,
                 media_origins: tuple[str, ...] = (),
                 large_bodies: tuple[tuple[re.Pattern[str], int], ...] = ()) -> None:
        self.inner = inner
        self.large_bodies = large_bodies
        self.connection = connection
        self.limit = limit
        self.media_origins = media_origins
        self.received = 0
        self.forwarded = False
        self.refused = False
        self.bad_request: str | None = None
        self.method = "?"
        self.host = ""

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> Any:
        self.method = getattr(start_line, "method", "?")
        self.host = headers.get("Host", "")
        path = getattr(start_line, "path", "").partition("?")[0]
        for pattern, limit in self.large_bodies:
            if pattern.fullmatch(path):
                self.limit = limit
        # Tornado answers any other Content-Length (not digits, or more than 18 of them:
        # a bare 400).
        declared = parse_digits(headers.get("Content-Length"))
        if declared is not None and declared > self.limit:
            self.refused = True
            return None
        self.forwarded = True
        try:
            return self.inner.headers_received(start_line, headers)
        except tornado.httputil.HTTPInputError as e:
            # Tornado checks the Host header (present, one, a host[:port]) as it builds
            # the request, before any handler exists, and would answer a bare 400 with
            # no body. The text up to the colon names the problem without echoing it.
            self.forwarded = False
            self.refused = True
            self.bad_request = str(e).split(":", 1)[0]
            return None

    def data_received(self, chunk: bytes) -> Any:
        if self.refused:
            return None
        self.received += len(chunk)
        if self.received > self.limit:
            # A chunked body (no Content-Length) grew too long: the handler never runs.
            self.refused = True
            self.inner.on_connection_close()
            return None
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        if not self.refused:
            self.inner.finish()
            return
        if self.bad_request is not None:
            status, reason = 400, "Bad Request"
            envelope: dict[str, Any] = {"error": {"code": "bad_request",
                                                  "message": self.bad_request}}
        else:
            status, reason = 413, "Payload Too Large"
            envelope = {"error": {"code": "payload_too_large",
                                  "message": f"request body over {self.limit} bytes",
                                  "limit": self.limit}}
        body = json.dumps(envelope).encode()
        headers = tornado.httputil.HTTPHeaders({
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            **security_headers(self.media_origins, self.host),
        })
        self.connection.write_headers(
            tornado.httputil.ResponseStartLine("HTTP/1.1", status, reason), headers, body)
        self.connection.finish()
        metrics.HTTP_REQUESTS.labels(self.method, "unmatched", str(status)).inc()

    def on_connection_close(self) -> None:
        if self.forwarded and not self.refused:
            self.inner.on_connection_close()


def write_error_envelope(handler: tornado.web.RequestHandler, status_code: int,
                         exc_info: Any = None) -> None:
    """Finish ``handler`` with the error envelope; nothing of an unexpected error leaks."""
    error = (exc_info or (None, None, None))[1]
    if isinstance(error, ApiError):
        envelope = error.envelope()
        wait = error.details.get("retry_after")
        if status_code == 429 and isinstance(wait, int) and not isinstance(wait, bool):
            # Set here: send_error cleared the headers set before the error was raised.
            handler.set_header("Retry-After", str(wait))
    elif status_code < 500:
        envelope = http_error_envelope(status_code, getattr(error, "log_message", None))
    else:
        # A server error's own text is for the log only: it may name internals.
        envelope = {"error": {"code": "internal_error", "message": "internal server error"}}
    handler.set_header("Content-Type", "application/json; charset=utf-8")
    handler.finish(json.dumps(envelope, ensure_ascii=False))


# Control characters (NUL among them) never name a file kpay serves; the OS refuses a NUL.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class StaticFiles(tornado.web.StaticFileHandler):
    """The H5 pages; a missing or forbidden file gets the error envelope, not HTML.

    A path the file system cannot even look up (a NUL byte, a control character, a name
    too long) is a 404 like any missing file, not a server error.
    """

    def parse_url_path(self, url_path: str) -> str:
        if CONTROL_CHARACTERS.search(url_path):
            raise tornado.web.HTTPError(404, "no such file")
        return super().parse_url_path(url_path)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        try:
            return super().validate_absolute_path(root, absolute_path)
        except (ValueError, OSError):
            raise tornado.web.HTTPError(404, "no such file") from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        write_error_envelope(self, status_code, kwargs.get("exc_info"))


def http_error_envelope(status: int, message: str | None) -> dict[str, Any]:
    codes = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
             405: "method_not_allowed", 413: "payload_too_large", 429: "rate_limited"}
    text = message or tornado.web.httputil.responses.get(status, "error")
    return {"error": {"code": codes.get(status, "http_error"), "message": text}}


class NotFoundHandler(BaseHandler):
    """Every unknown path gets the error envelope, not Tornado's HTML page."""

    def prepare(self) -> None:
        raise NotFound(f"no route for {self.request.path}", code="not_found")


def validate(model: type[M], data: dict[str, Any], within: str = "") -> M:
    """Validate ``data`` with a pydantic model; 400 ``invalid_field`` naming the first
    bad field (as ``<within>.<field>`` when ``within`` is given)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join([*([within] if within else []), *(str(p) for p in first["loc"])])
        where = where or "body"
        raise BadRequest(f"{where}: {first['msg']}", code="invalid_field", field=where) from None


def tornado_rules(routes: list[Route]) -> list[tornado.web.URLSpec]:
    """Tornado URL rules, each handler told the path template it serves (for metrics)."""
    seen: dict[str, Route] = {}
    rules = []
    for route in routes:
        if route.path in seen:
            raise ValueError(f"route {route.path} is declared twice")
        seen[route.path] = route
        told = {**route.kwargs, "route_path": route.path}
        if route.limit is not None:
            told["route_limit"] = route.limit
        rules.append(tornado.web.url(route.pattern(), route.handler, told))
    return rules
