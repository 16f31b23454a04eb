"""Build and run the kpay application: settings, plugins, store, hub, money, scheduler."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import signal
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.iostream
import tornado.web

from kpay.core import attention, audit, users
from kpay.core import config as config_module
from kpay.core.auth import TokenService, resolve_secret
from kpay.core.clock import Clock
from kpay.core.config import Settings
from kpay.core.money.service import MoneyService
from kpay.core.plugins import (
    PluginManager,
    available_plugins,
    await_me_maybe,
    notify,
    register_all,
    select,
    settings_models,
)
from kpay.core.ratelimit import RateLimiter
from kpay.core.realtime.broker import Broker, MemoryBroker
from kpay.core.realtime.channels import ChannelRegistry
from kpay.core.realtime.hub import Hub
from kpay.core.realtime.protocol import Publication
from kpay.core.realtime.socket import SocketHandler, keep_alive
from kpay.core.routes import core_routes
from kpay.core.scheduler import Scheduler
from kpay.core.sessions import watch_standing
from kpay.core.store import EmbeddedMongo, IndexSpec, Store
from kpay.core.web import (
    KPayApplication,
    NotFoundHandler,
    Route,
    StaticFiles,
    client_ip,
    client_protocol,
    tornado_rules,
    trusted_networks,
)

log = logging.getLogger("kpay")

CORE_INDEXES = [
    IndexSpec.of("dev_state", "name", unique=True),
]


def load_settings(config_path: str | None, overrides: dict[str, dict[str, Any]] | None = None,
                  pm: PluginManager | None = None) -> tuple[Settings, PluginManager]:
    """Read config, load the selected plugins, validate every section."""
    raw = config_module.gather(config_path, overrides=overrides)
    if pm is None:
        pm = PluginManager()
        pm.load(select(config_module.enabled_plugin_names(raw), available_plugins()))
    sections = settings_models(pm, reserved=config_module.CORE_SECTIONS)
    return config_module.validate(raw, sections, str(config_path or "")), pm


class KPay:
    """One kpay application: what handlers, plugins and jobs reach as ``app``."""

    def __init__(self, settings: Settings, pm: PluginManager, mongo_uri: str,
                 var_dir: str = "var", clock: Clock | None = None) -> None:
        self.settings = settings
        self.pm = pm
        self.var_dir = var_dir
        # Tests pass a clock started at a pinned instant (kpay.testing's ``kpay_now``).
        self.clock = clock or Clock()
        self.dev = settings.dev.enabled
        self.tokens = TokenService(settings.auth, resolve_secret(settings.auth, self.dev, var_dir),
                                   self.clock)
        self.store = Store(mongo_uri, settings.mongodb.database)
        self.hub = Hub()
        self.broker: Broker = make_broker(self)
        self.broker.on_publication(self.hub.deliver)
        self.sockets: set[SocketHandler] = set()
        # How many of ``sockets`` each user has authenticated ([realtime]
        # max_sockets_per_user); kept by SocketHandler, so the cap costs no scan.
        self.sockets_per_user: dict[str, int] = {}
        # HTTP request limits ([limits]), per process; BaseHandler.prepare takes from it.
        self.limiter = RateLimiter(settings.limits)
        self.money = MoneyService(self)
        self.attention = attention.Attention(self.store, self.clock)
        self.users = users.Users(self.store, self.clock, settings.auth.standing_cache_seconds)
        self.audit = audit.AuditLog(self.store, self.clock)
        self.routes: list[Route] = []
        self.channels = ChannelRegistry([])
        self.scheduler = Scheduler([])
        self._tasks: set[asyncio.Task] = set()
        self.server: tornado.httpserver.HTTPServer | None = None
        self.port = 0
        self.stopped = False
        server = settings.server
        # Stable across restarts, so a restarted node recognises what it left behind;
        # without a configured name, start() names it after the port it binds.
        self.node_id = server.node_id or f"{socket.gethostname()}:{secrets.token_hex(4)}"

    # -- helpers for handlers and plugins ---------------------------------------

    async def publish(self, channel: str, type: str, data: Any) -> Publication:
        """Publish an event on a channel through the broker (every node gets it)."""
        return await self.broker.publish(channel, type, data)

    async def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call an ``on_*`` hook with each plugin isolated from the others."""
        await notify(self.pm, hook_name, reraise=self.dev, app=self, **kwargs)

    @staticmethod
    async def call(function: Any, *args: Any) -> Any:
        return await await_me_maybe(function(*args))

    def spawn(self, coroutine: Coroutine) -> asyncio.Task:
        """Run in the background, keeping a reference and logging failures."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # -- lifecycle ---------------------------------------------------------------

    async def register_plugins(self) -> None:
        """Collect the plugins' routes, channels, order kinds and payment providers.

        Needs no database, so ``kpay plugins`` can show them without a server. A plugin
        that raises here stops start-up with a ``PluginError`` naming it.
        """
        self.routes = core_routes(self) + await register_all(self.pm, "register_routes", self)
        self.channels = ChannelRegistry(await register_all(self.pm, "register_channels", self))
        self.money.register(
            await register_all(self.pm, "register_order_kinds", self),
            await register_all(self.pm, "register_payment_providers", self),
        )

    async def start(self, port: int | None = None, host: str | None = None) -> int:
        port = self.settings.server.port if port is None else port
        host = host or self.settings.server.host
        # Bound first: a port in use fails the start before anything is changed (a
        # plugin's start-up may act on what "this node" left behind), and the port
        # really bound (``--port``, or 0) names the node.
        sockets = tornado.netutil.bind_sockets(port, host)
        self.port = sockets[0].getsockname()[1]
        if not self.settings.server.node_id:
            self.node_id = f"{socket.gethostname()}:{self.port}"
        try:
            await self._prepare()
        except BaseException:
            for bound in sockets:
                bound.close()
            raise
        self.server.add_sockets(sockets)
        self.scheduler.start()
        self.spawn(watch_standing(self))
        realtime = self.settings.realtime
        if realtime.ping_interval_seconds:
            self.spawn(keep_alive(self, realtime.ping_interval_seconds,
                                  realtime.ping_timeout_seconds))
        log.info("kpay listening on http://%s:%d with plugins: %s", host, self.port,
                 ", ".join(p["name"] for p in self.pm.describe()) or "none")
        return self.port

    async def _prepare(self) -> None:
        """Everything before serving: plugins, indexes, jobs, broker, ``on_startup``."""
        await self.register_plugins()
        indexes = [*CORE_INDEXES, *attention.INDEXES, *audit.INDEXES, *users.INDEXES,
                   *self.money.indexes(), *await register_all(self.pm, "register_indexes", self)]
        await self.store.create_indexes(indexes)
        if self.dev:
            await self._restore_dev_clock()
        jobs = self.money.jobs() + await register_all(self.pm, "register_jobs", self)
        self.scheduler = Scheduler(jobs, enabled=self.settings.scheduler.enabled)
        await self.broker.start()
        await self.notify("on_startup")
        server = self.settings.server
        # Bodies up to max_discard_bytes are read (and dropped past max_body_bytes) so the
        # client gets a 413 envelope; Tornado closes the connection on anything larger.
        # Forwarded headers count only from [server] trusted_proxies; a connection idle
        # (or sending its request head) too long or its body too slowly is closed, and
        # so is one accepted beyond max_connections.
        self.server = KPayHTTPServer(
            self.make_application(),
            max_body_size=max(server.max_discard_bytes, server.max_body_bytes),
            idle_connection_timeout=server.idle_connection_timeout_seconds,
            body_timeout=server.body_timeout_seconds,
            max_connections=server.max_connections,
            trusted_proxies=server.trusted_proxies)

    def make_application(self) -> tornado.web.Application:
        realtime = self.settings.realtime
        handlers: list[Any] = tornado_rules(self.routes)
        handlers.append((r"/ws", SocketHandler))
        static = Path(self.settings.server.static_path)
        if static.is_dir():
            handlers.append((r"/()", StaticFiles,
                             {"path": str(static), "default_filename": "index.html"}))
            handlers.append((r"/static/(.*)", StaticFiles,
                             {"path": str(static)}))
        return KPayApplication(
            handlers,
            max_body_bytes=self.settings.server.max_body_bytes,
            # img-src and media-src of the Content-Security-Policy every response carries.
            media_origins=self.settings.server.media_origins,
            kpay=self,
            default_handler_class=NotFoundHandler,
            websocket_max_message_size=realtime.max_frame_bytes,
            # Pings come from one keep_alive task (started in start()), not a task per socket.
            websocket_ping_interval=None,
            log_function=log_request,
        )

    async def stop(self) -> None:
        """Stop serving, say goodbye to plugins, close connections. Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self.scheduler.stop()
        if self.server is not None:
            self.server.stop()
        for connection in tuple(self.sockets):
            connection.close(1001, "server stopping")
        await self.notify("on_shutdown")
        for task in tuple(self._tasks):
            task.cancel()
        await self.broker.stop()
        await self.store.close()

    async def advance_clock(self, seconds: float) -> None:
        """Dev mode: move the clock forward, remember it, and run every job at once."""
        self.clock.advance(seconds)
        await self.store["dev_state"].update_one(
            {"name": "clock"}, {"$set": {"offset": self.clock.offset}}, upsert=True)
        await self.scheduler.run_all_now()

    async def _restore_dev_clock(self) -> None:
        # A restarted dev server keeps its advanced time, so stored times stay in the past.
        state = await self.store["dev_state"].find_one({"name": "clock"})
        if state and state.get("offset", 0) > self.clock.offset:
            self.clock.advance(state["offset"] - self.clock.offset)
        # Recorded, so the CLI (kpay token, reconcile) reads the same time as the server.
        await self.store["dev_state"].update_one(
            {"name": "clock"}, {"$set": {"offset": self.clock.offset}}, upsert=True)


class KPayHTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server with a cap on open connections and forwarded headers
    believed only from trusted proxies.

    ``max_connections``: Tornado has no cap of its own. Every accepted connection is
    counted until its socket closes, whatever it became (a WebSocket keeps its
    connection's stream, so it stays counted); one accepted at the cap is closed at once.

    ``trusted_proxies``: X-Forwarded-For / X-Real-IP / X-Forwarded-Proto set
    ``request.remote_ip`` and ``request.protocol`` (through
    :func:`kpay.core.web.client_ip`) only when the socket peer is one of them; Tornado's
    own ``xheaders`` would believe them from anyone.
    """

    def initialize(self, request_callback: Any, *, max_connections: int = 10_000,
                   trusted_proxies: list[str] | tuple[str, ...] = (), **kwargs: Any) -> None:
        kwargs["xheaders"] = False
        super().initialize(request_callback, **kwargs)
        self.max_connections = max_connections
        self.trusted_proxies = trusted_networks(trusted_proxies)
        self.open_connections = 0
        self.refused_connections = 0
        self._refusing = False

    def handle_stream(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        if self.open_connections >= self.max_connections:
            self.refused_connections += 1
            if not self._refusing:
                self._refusing = True
                log.warning("%d connections open ([server] max_connections): closing new "
                            "ones until fewer are open", self.open_connections)
            stream.close()
            return
        if self._refusing and self.open_connections < self.max_connections * 0.9:
            self._refusing = False
        self.open_connections += 1
        # Counted down when the socket closes, through whichever owner closes it (the
        # HTTP connection or, after an upgrade, the WebSocket): IOStream.close() calls
        # close_fd() exactly once.
        close_fd = stream.close_fd

        def release() -> None:
            self.open_connections -= 1
            close_fd()

        stream.close_fd = release  # type: ignore[method-assign]
        super().handle_stream(stream, address)

    def start_request(self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
                      ) -> tornado.httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        context = getattr(request_conn, "context", None)
        if self.trusted_proxies and context is not None:
            delegate = ForwardedHeaders(delegate, context, self.trusted_proxies)
        return delegate


class ForwardedHeaders(tornado.httputil.HTTPMessageDelegate):
    """Sets one request's ``remote_ip`` and ``protocol`` from the forwarded headers when
    its peer is a trusted proxy (:func:`kpay.core.web.client_ip`), and puts the
    connection's own back when the request is done (the next one on the connection
    starts from the socket again)."""

    def __init__(self, inner: tornado.httputil.HTTPMessageDelegate, context: Any,
                 trusted: Any) -> None:
        self.inner = inner
        self.context = context
        self.trusted = trusted
        self.peer = context.remote_ip
        self.protocol = context.protocol

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> Any:
        self.context.remote_ip = client_ip(self.peer, headers, self.trusted)
        self.context.protocol = client_protocol(self.peer, headers, self.trusted,
                                                self.protocol)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        try:
            self.inner.finish()
        finally:
            self._restore()

    def on_connection_close(self) -> None:
        try:
            self.inner.on_connection_close()
        finally:
            self._restore()

    def _restore(self) -> None:
        self.context.remote_ip = self.peer
        self.context.protocol = self.protocol


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


def make_broker(app: KPay) -> Broker:
    realtime = app.settings.realtime
    if realtime.broker == "redis":
        from kpay.core.realtime.redis_broker import RedisBroker

        return RedisBroker(realtime.redis_url, realtime.history_size,
                           realtime.history_ttl_seconds, app.clock.time,
                           prefix=realtime.redis_prefix)
    return MemoryBroker(realtime.history_size, realtime.history_ttl_seconds, app.clock.time,
                        history_total_bytes=realtime.history_total_bytes,
                        listening=app.hub.subscribers.__contains__)


def configure_logging(level: str) -> None:
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Every line, whichever logger wrote it, has secret query values redacted.
    install_redaction(*logging.getLogger().handlers)


async def check_startup(settings: Settings, pm: PluginManager, var_dir: str = "var") -> None:
    """Run the checks ``serve`` makes before it needs the network, without serving or
    connecting to the database (``kpay config check``): the same code, not a copy of it.

    :class:`KPay` refuses a missing, short or weak ``[auth] secret``; ``register_plugins``
    runs every plugin's registration, where a plugin checks its own settings (wechat_pay:
    a merchant outside dev mode, its keys not weak or placeholders). A ConfigError or a
    PluginError names what is wrong.
    """
    app = KPay(settings, pm, settings.mongodb.uri or "mongodb://127.0.0.1:1", var_dir=var_dir)
    try:
        await app.register_plugins()
    finally:
        await app.store.close()


def main(config_path: str | None = None, port: int | None = None) -> None:
    """Run the server until SIGINT/SIGTERM (``kpay serve`` and ``server.py``)."""
    settings, pm = load_settings(config_path)
    configure_logging(settings.logging.level)
    embedded = None
    uri = settings.mongodb.uri
    if not uri:
        embedded = EmbeddedMongo(settings.mongodb.embedded_path, settings.mongodb.embedded_command)
        uri = embedded.start()
    try:
        asyncio.run(_serve(settings, pm, uri, port))
    finally:
        if embedded is not None:
            embedded.stop()


async def _serve(settings: Settings, pm: PluginManager, uri: str, port: int | None) -> None:
    app = KPay(settings, pm, uri, var_dir=config_module.var_dir())
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await app.start(port=port)
    await stopping.wait()
    log.info("kpay stopping")
    await app.stop()
