"""Build the kpay application (:class:`KPay`): settings, plugins, store, hub, money and
the core services. Starting and stopping it: kpay/core/lifecycle.py; what plugins
register at start-up: kpay/core/registration.py; running it as a process:
kpay/core/serving.py."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import tornado.httpserver
import tornado.web

from kpay.core import (
    attention,
    audit,
    dev_clock,
    lifecycle,
    notifications,
    registration,
    telling,
    users,
)
from kpay.core import config as config_module
from kpay.core import follows as follows_module
from kpay.core.access import Access
from kpay.core.analytics.rollups import Rollups
from kpay.core.auth import TokenService, resolve_secret
from kpay.core.clock import Clock
from kpay.core.config import Settings
from kpay.core.media import service as media_service
from kpay.core.money.service import MoneyService
from kpay.core.plugins import (
    PluginManager,
    available_plugins,
    await_me_maybe,
    notify,
    select,
    settings_models,
)
from kpay.core.ratelimit import RateLimiter
from kpay.core.realtime import cluster
from kpay.core.realtime.broker import Broker, MemoryBroker
from kpay.core.realtime.channels import ChannelRegistry
from kpay.core.realtime.hub import Hub
from kpay.core.realtime.protocol import Publication
from kpay.core.realtime.socket import SocketHandler
from kpay.core.scheduler import Scheduler
from kpay.core.search import Search
from kpay.core.store import CollectionGuard, IndexSpec, Store
from kpay.core.web import Route

log = logging.getLogger("kpay")

T = TypeVar("T")


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
        forwarders' hooks (``on_user_notifications``, ``on_user_notification``: WeChat
        template messages).
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

    def cancel_background_tasks(self) -> None:
        """Cancel what ``spawn`` started (the app is stopping)."""
        for task in tuple(self._tasks):
            task.cancel()

    # -- lifecycle (kpay/core/lifecycle.py, kpay/core/registration.py) -------------

    async def register_plugins(self) -> None:
        """Collect the plugins' routes, channels, order kinds and payment providers.

        Needs no database, so ``kpay plugins`` can show them without a server. A plugin
        that raises here stops start-up with a ``PluginError`` naming it.
        """
        await registration.register_plugins(self)

    def core_indexes(self) -> list[IndexSpec]:
        """The indexes of the core's own collections."""
        return registration.core_indexes(self)

    async def start(self, port: int | None = None, host: str | None = None,
                    sockets: list[socket.socket] | None = None,
                    worker: int | None = None) -> int:
        """Serve on ``port`` (or on ``sockets`` already bound, a worker's share of its
        supervisor's listener); ``worker`` i names this process ``<node_id>/w<i>``."""
        return await lifecycle.start(self, port, host, sockets, worker)

    def make_application(self) -> tornado.web.Application:
        return lifecycle.make_application(self)

    async def stop(self) -> None:
        """Stop serving, say goodbye to plugins, close connections. Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        await lifecycle.stop(self)
        self._plugin_state.clear()

    async def advance_clock(self, seconds: float) -> None:
        """Dev mode: move the clock forward, remember it, and run every job at once."""
        await dev_clock.advance(self, seconds)


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
