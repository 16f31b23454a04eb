"""Build and run the kpay application: settings, plugins, store, hub, money, scheduler."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import tornado.httpserver
import tornado.httputil
import tornado.iostream
import tornado.web

from kpay.core import attention, audit, notifications, telling, users
from kpay.core import audience as audience_module
from kpay.core import config as config_module
from kpay.core import follows as follows_module
from kpay.core.access import Access
from kpay.core.analytics import rollups
from kpay.core.analytics.rollups import Rollups
from kpay.core.auth import TokenService, resolve_secret
from kpay.core.clock import Clock
from kpay.core.config import Settings
from kpay.core.httpserver import KPayHTTPServer
from kpay.core.leases import LEASES, JobLeases
from kpay.core.logs import log_request
from kpay.core.media import service as media_service
from kpay.core.media.routes import CHUNK_PATH
from kpay.core.money.notify import notify_routes
from kpay.core.money.service import MoneyService
from kpay.core.plugin_static import static_rules
from kpay.core.plugins import (
    PluginManager,
    available_plugins,
    await_me_maybe,
    check_index_owners,
    collection_owners,
    notify,
    register_all,
    select,
    settings_models,
)
from kpay.core.ratelimit import RateLimiter
from kpay.core.realtime import cluster
from kpay.core.realtime.broker import Broker, MemoryBroker
from kpay.core.realtime.channels import ChannelRegistry
from kpay.core.realtime.hub import Hub
from kpay.core.realtime.keepalive import keep_alive
from kpay.core.realtime.protocol import Publication
from kpay.core.realtime.socket import SocketHandler
from kpay.core.routes import core_routes
from kpay.core.scheduler import Scheduler
from kpay.core.search import INDEXES as SEARCH_INDEXES
from kpay.core.search import Search
from kpay.core.sessions import watch_standing
from kpay.core.store import CollectionGuard, IndexSpec, Store
from kpay.core.web import KPayApplication, NotFoundHandler, Route, StaticFiles, tornado_rules

log = logging.getLogger("kpay")

T = TypeVar("T")

CORE_INDEXES = [
    IndexSpec.of("dev_state", "name", unique=True),
    *SEARCH_INDEXES,  # app.search's collection (kpay/core/search.py)
]
# Core collections that have no index of their own (the others are named by
# ``KPay.core_indexes``): no plugin may declare one of these.
CORE_COLLECTIONS_WITHOUT_INDEXES = frozenset({"accounts", LEASES})


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
        # The cluster view (docs/websocket.md "Presence across nodes"): the hub tells the
        # broker its tallies and which channels it no longer wants; control messages
        # from other nodes are applied by kpay/core/realtime/cluster.py.
        self.hub.tally, self.hub.idle = self.broker.tally, self.broker.unlisten
        self.broker.on_command(functools.partial(cluster.handle, self))
        self.sockets: set[SocketHandler] = set()
        # HTTP requests whose handler is running (BaseHandler): a stopping app waits
        # for them, so a payment or refund under way is not cut off.
        self.requests_in_flight = 0
        # How many of ``sockets`` each user has authenticated ([realtime]
        # max_sockets_per_user); kept by SocketHandler, so the cap costs no scan.
        self.sockets_per_user: dict[str, int] = {}
        # HTTP request limits ([limits]), per process; BaseHandler.prepare takes from it.
        self.limiter = RateLimiter(settings.limits)
        self.money = MoneyService(self)
        # The dashboards' daily rollups, folded in as money moves (docs/analytics.md).
        self.rollups = Rollups(self)
        # Finding rooms, courses and consultants from the home page (docs/plugins.md).
        self.search = Search(self.store, self.clock, settings.storefront.categories)
        self.attention = attention.Attention(self.store, self.clock)
        self.users = users.Users(self.store, self.clock, settings.auth.standing_cache_seconds)
        self.audit = audit.AuditLog(self.store, self.clock)
        # Each user's saved notifications (tell_user saves one; operators add them).
        self.notifications = notifications.Notifications(self.store, self.clock)
        # Uploads, storage and serving of images, audio and video (docs/media.md).
        self.media = media_service.MediaService(self)
        # Avatars are media ids; the users service asks app.media for their URLs.
        self.users.media_source = self
        self.follows = follows_module.Follows(self.store, self.clock, self.users)
        self.routes: list[Route] = []
        # Who owns which collection (``register_collections``), known at start-up;
        # ``check_collections`` (tests: kpay.testing) makes the store refuse a plugin
        # the collections it did not declare.
        self.collections: CollectionGuard | None = None
        self.check_collections = False
        self.channels = ChannelRegistry([])
        self.access = Access(self, [])
        self.scheduler = Scheduler([])
        self._tasks: set[asyncio.Task] = set()
        # Plugins' per-app state by owner (``plugin_state``), dropped when the app stops.
        self._plugin_state: dict[str, Any] = {}
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

    async def tell_user(self, user_id: str, kind: str, data: dict[str, Any]) -> None:
        """Tell a user something: event ``kind`` with ``data`` on ``user:<id>`` (the open
        pages), a saved notification worded by ``describe_notification`` (published as
        event ``notification`` on ``user:<id>``, for the bell and the list) and the
        ``on_user_notification`` hook (forwarders, such as WeChat template messages).
        Each is tried even if another fails: a failed publish or save is logged (raised
        after the hook in dev mode); the hook isolates plugins as ``notify`` does.
        """
        await telling.tell_users(self, [telling.Told(user_id, kind, data)])

    async def tell_users(self, batch: list[telling.Told]) -> None:
        """``tell_user`` for many at once (``Told(user_id, kind, data)`` each): one
        ``insert_many`` of the saved notifications and bounded concurrent publishes, so
        a wave of unlocks costs a few round trips per batch (kpay/core/telling.py)."""
        await telling.tell_users(self, batch)

    def plugin_state(self, owner: str, factory: Callable[[], T]) -> T:
        """A plugin's state for this app (an engine, a lock, a client), made by
        ``factory()`` on first use and kept until the app stops. ``owner`` is the
        plugin's name, or ``<plugin>.<what>`` for one of several (docs/plugins.md).

        One process may run several apps (tests, a second node), so a plugin keeps its
        state here rather than in a module-level registry keyed by app."""
        if owner not in self._plugin_state:
            self._plugin_state[owner] = factory()
        return self._plugin_state[owner]

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
        self.money.adjustments.register(
            await register_all(self.pm, "register_price_adjusters", self))
        # The core serves each provider's notify routes (docs/money.md, "Notify routes").
        self.routes += notify_routes(self)
        self.access = Access(self, await register_all(self.pm, "register_resources", self))
        core = ({spec.collection for spec in self.core_indexes()} | CORE_COLLECTIONS_WITHOUT_INDEXES
                | media_service.COLLECTIONS_WITHOUT_INDEXES | rollups.COLLECTIONS_WITHOUT_INDEXES)
        self.collections = await collection_owners(self.pm, self, core)
        if self.check_collections:
            self.store.guard = self.collections

    def core_indexes(self) -> list[IndexSpec]:
        """The indexes of the core's own collections."""
        return [*CORE_INDEXES, *attention.INDEXES, *audit.INDEXES, *users.INDEXES,
                *self.money.indexes(), *notifications.INDEXES, *media_service.INDEXES,
                *audience_module.INDEXES, *rollups.INDEXES]

    async def start(self, port: int | None = None, host: str | None = None,
                    sockets: list[socket.socket] | None = None,
                    worker: int | None = None) -> int:
        """Serve on ``port`` (or on ``sockets`` already bound, a worker's share of its
        supervisor's listener); ``worker`` i names this process ``<node_id>/w<i>``."""
        port = self.settings.server.port if port is None else port
        host = host or self.settings.server.host
        # Bound first: a port in use fails the start before anything is changed (a
        # plugin's start-up may act on what "this node" left behind), and the port
        # really bound (``--port``, or 0) names the node.
        sockets = sockets or tornado.netutil.bind_sockets(port, host)
        self.port = sockets[0].getsockname()[1]
        if not self.settings.server.node_id:
            self.node_id = f"{socket.gethostname()}:{self.port}"
        if worker is not None:
            # Siblings share the port: each is its own node for presence and restart
            # recovery (docs/operations.md, "Workers").
            self.node_id = f"{self.node_id}/w{worker}"
        try:
            await self._prepare()
        except BaseException:
            for bound in sockets:
                bound.close()
            raise
        self.server.add_sockets(sockets)
        if self.scheduler.leases is not None:
            await self.scheduler.leases.release_left_by_this_node()
        self.scheduler.start()
        self.spawn(watch_standing(self))
        # History not yet in the rollups (a first start after an upgrade, a crash
        # mid-fold) is folded in the background, in batches, with progress in the log.
        self.rollups.backfill = self.spawn(self.rollups.catch_up(progress=True))
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
        indexes = [*self.core_indexes(), *await register_all(self.pm, "register_indexes", self)]
        if self.collections is not None:
            check_index_owners(self.pm, self.collections)
        await self.store.create_indexes(indexes)
        if self.dev:
            await self._restore_dev_clock()
        jobs = (self.money.jobs() + self.media.jobs() + self.rollups.jobs()
                + await register_all(self.pm, "register_jobs", self))
        # Leases make each job run once per period across workers and nodes.
        self.scheduler = Scheduler(jobs, enabled=self.settings.scheduler.enabled,
                                   leases=JobLeases(self.store, self.node_id))
        self.broker.member = self.node_id
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
        # Before /static/(.*): a plugin's own pages and files (kpay/core/plugin_static.py).
        handlers.extend(static_rules(self.pm, StaticFiles))
        static = Path(self.settings.server.static_path)
        if static.is_dir():
            handlers.append((r"/()", StaticFiles,
                             {"path": str(static), "default_filename": "index.html"}))
            handlers.append((r"/static/(.*)", StaticFiles,
                             {"path": str(static)}))
        return KPayApplication(
            handlers,
            max_body_bytes=self.settings.server.max_body_bytes,
            # Upload chunks have their own limit ([media] chunk_bytes).
            large_bodies=((CHUNK_PATH, self.media.chunk_size),),
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
        # Requests and job runs under way finish (a job run then releases its lease, so
        # the next node need not wait for it to expire: docs/operations.md "Job leases").
        await self._drain(self.settings.server.shutdown_timeout_seconds)
        await self.notify("on_shutdown")
        for task in tuple(self._tasks):
            task.cancel()
        await self.broker.stop()
        await self.media.close()
        await self.store.close()
        self._plugin_state.clear()

    async def _drain(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, for the requests and jobs under way: no new
        ones start (the server and the scheduler are stopped), and a money write cut off
        half-way would leave its caller guessing. Real time, not the app's clock."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.requests_in_flight > 0 or self.scheduler.running():
            if asyncio.get_running_loop().time() >= deadline:
                log.warning("stopping with %d request(s) and jobs %s still running after "
                            "%.0fs ([server] shutdown_timeout_seconds)",
                            self.requests_in_flight, self.scheduler.running(), timeout)
                return
            await asyncio.sleep(0.05)

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


def make_broker(app: KPay) -> Broker:
    realtime = app.settings.realtime
    if realtime.broker == "redis":
        from kpay.core.realtime.redis_broker import RedisBroker

        return RedisBroker(realtime.redis_url, realtime.history_size,
                           realtime.history_ttl_seconds, app.clock.time,
                           prefix=realtime.redis_prefix,
                           presence_ttl=realtime.presence_ttl_seconds,
                           listening=app.hub.wants)
    return MemoryBroker(realtime.history_size, realtime.history_ttl_seconds, app.clock.time,
                        history_total_bytes=realtime.history_total_bytes,
                        listening=app.hub.subscribers.__contains__)


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
