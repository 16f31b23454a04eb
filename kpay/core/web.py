"""The base of every HTTP handler: JSON in and out, the error envelope, auth, routes.

Handlers stay small: parse with :meth:`BaseHandler.body` (a pydantic model), check
the caller with :meth:`BaseHandler.require_user`, do the work, :meth:`write_json`.
Any :class:`kpay.core.errors.ApiError` raised becomes the error envelope.
"""

from __future__ import annotations

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
from kpay.core.auth import User
from kpay.core.errors import ApiError, BadRequest, Forbidden, NotFound, Unauthorized

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.web")

M = TypeVar("M", bound=BaseModel)

PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    """An HTTP route: ``path`` with ``{name}`` placeholders, served by ``handler``.

    ``tags`` group it in the OpenAPI document.
    """

    path: str
    handler: type[tornado.web.RequestHandler]
    kwargs: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def pattern(self) -> str:
        return PLACEHOLDER.sub(r"(?P<\1>[^/]+)", self.path) + "$"


@dataclass(frozen=True)
class Operation:
    """OpenAPI facts about one handler method, set with :func:`api`."""

    summary: str
    body: type[BaseModel] | None = None
    auth: bool = True
    roles: tuple[str, ...] = ()
    status: int = 200
    query: tuple[str, ...] = ()


def api(summary: str, *, body: type[BaseModel] | None = None, auth: bool = True,
        roles: tuple[str, ...] = (), status: int = 200,
        query: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Describe a handler method for the OpenAPI document."""

    def mark(method: Callable) -> Callable:
        method.__kpay_operation__ = Operation(summary, body, auth, roles, status, query)  # type: ignore[attr-defined]
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
        try:
            return json.loads(self.request.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"body is not valid JSON: {e}", code="invalid_json") from None

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
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"{name} must be an integer", code="invalid_field",
                             field=name) from None
        if not low <= value <= high:
            raise BadRequest(f"{name} must be between {low} and {high}",
                             code="invalid_field", field=name)
        return value

    # -- identity ----------------------------------------------------------

    def get_current_user(self) -> User | None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            return None
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization must be 'Bearer <token>'", code="invalid_token")
        return self.kpay.tokens.verify(token.strip())

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
        route = getattr(self, "route_path", None) or "unmatched"
        metrics.HTTP_REQUESTS.labels(self.request.method, route, str(self.get_status())).inc()


class KPayApplication(tornado.web.Application):
    """Tornado's application, answering an over-long request body with the 413 envelope.

    Tornado's own ``max_body_size`` closes the connection without a response, which a
    client sees as a network error. Here a body over ``max_body_bytes`` is read and
    dropped chunk by chunk (never kept), and the client gets a proper answer.
    """

    def __init__(self, handlers: list[Any], max_body_bytes: int, **settings: Any) -> None:
        super().__init__(handlers, **settings)
        self.max_body_bytes = max_body_bytes

    def start_request(self, server_conn: object,
                      request_conn: tornado.httputil.HTTPConnection
                      ) -> tornado.httputil.HTTPMessageDelegate:
        inner = super().start_request(server_conn, request_conn)
        return BodyLimit(inner, request_conn, self.max_body_bytes)


class BodyLimit(tornado.httputil.HTTPMessageDelegate):
    """Passes a request through unless its body exceeds ``limit`` bytes."""

    def __init__(self, inner: tornado.httputil.HTTPMessageDelegate,
                 connection: tornado.httputil.HTTPConnection, limit: int) -> None:
        self.inner = inner
        self.connection = connection
        self.limit = limit
        self.received = 0
        self.forwarded = False
        self.refused = False
        self.method = "?"

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> Any:
        self.method = getattr(start_line, "method", "?")
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.limit:
            self.refused = True
            return None
        self.forwarded = True
        return self.inner.headers_received(start_line, headers)

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
        envelope = {"error": {"code": "payload_too_large",
                              "message": f"request body over {self.limit} bytes",
                              "limit": self.limit}}
        body = json.dumps(envelope).encode()
        headers = tornado.httputil.HTTPHeaders({
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
        })
        self.connection.write_headers(
            tornado.httputil.ResponseStartLine("HTTP/1.1", 413, "Payload Too Large"),
            headers, body)
        self.connection.finish()
        metrics.HTTP_REQUESTS.labels(self.method, "unmatched", "413").inc()

    def on_connection_close(self) -> None:
        if self.forwarded and not self.refused:
            self.inner.on_connection_close()


def write_error_envelope(handler: tornado.web.RequestHandler, status_code: int,
                         exc_info: Any = None) -> None:
    """Finish ``handler`` with the error envelope; nothing of an unexpected error leaks."""
    error = (exc_info or (None, None, None))[1]
    if isinstance(error, ApiError):
        envelope = error.envelope()
    elif status_code < 500:
        envelope = http_error_envelope(status_code, getattr(error, "log_message", None))
    else:
        # A server error's own text is for the log only: it may name internals.
        envelope = {"error": {"code": "internal_error", "message": "internal server error"}}
    handler.set_header("Content-Type", "application/json; charset=utf-8")
    handler.finish(json.dumps(envelope, ensure_ascii=False))


class StaticFiles(tornado.web.StaticFileHandler):
    """The H5 pages; a missing or forbidden file gets the error envelope, not HTML."""

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


def json_default(value: Any) -> Any:
    from datetime import datetime

    from bson import ObjectId

    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def tornado_rules(routes: list[Route]) -> list[tornado.web.URLSpec]:
    """Tornado URL rules, each handler told the path template it serves (for metrics)."""
    seen: dict[str, Route] = {}
    rules = []
    for route in routes:
        if route.path in seen:
            raise ValueError(f"route {route.path} is declared twice")
        seen[route.path] = route
        rules.append(tornado.web.url(route.pattern(), route.handler,
                                     {**route.kwargs, "route_path": route.path}))
    return rules
