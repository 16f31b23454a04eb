"""Starting and stopping a :class:`kpay.core.app.KPay`: bind, prepare (plugins, indexes,
jobs, broker, ``on_startup``), serve, and a graceful stop that lets the requests and
job runs under way finish (docs/operations.md)."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.netutil
import tornado.web

from kpay.core import dev_clock
from kpay.core.httpserver import KPayHTTPServer
from kpay.core.leases import JobLeases
from kpay.core.logs import log_request
from kpay.core.media.routes import CHUNK_PATH
from kpay.core.plugin_static import static_rules
from kpay.core.plugins import check_index_owners, register_all
from kpay.core.realtime.keepalive import keep_alive
from kpay.core.realtime.socket import SocketHandler
from kpay.core.scheduler import Scheduler
from kpay.core.sessions import watch_standing
from kpay.core.web import KPayApplication, NotFoundHandler, StaticFiles, tornado_rules

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay")


async def start(app: KPay, port: int | None = None, host: str | None = None,
                sockets: list[socket.socket] | None = None, worker: int | None = None) -> int:
    """``KPay.start``: serve on ``port`` (or on ``sockets`` already bound); return the
    port bound."""
    port = app.settings.server.port if port is None else port
    host = host or app.settings.server.host
    # Bound first: a port in use fails the start before anything is changed (a
    # plugin's start-up may act on what "this node" left behind), and the port
    # really bound (``--port``, or 0) names the node.
    sockets = sockets or tornado.netutil.bind_sockets(port, host)
    app.port = sockets[0].getsockname()[1]
    if not app.settings.server.node_id:
        app.node_id = f"{socket.gethostname()}:{app.port}"
    if worker is not None:
        # Siblings share the port: each is its own node for presence and restart
        # recovery (docs/operations.md, "Workers").
        app.node_id = f"{app.node_id}/w{worker}"
    try:
        await prepare(app)
    except BaseException:
        for bound in sockets:
            bound.close()
        raise
    app.server.add_sockets(sockets)
    if app.scheduler.leases is not None:
        await app.scheduler.leases.release_left_by_this_node()
    app.scheduler.start()
    app.spawn(watch_standing(app))
    # History not yet in the rollups (a first start after an upgrade, a crash
    # mid-fold) is folded in the background, in batches, with progress in the log.
    app.rollups.backfill = app.spawn(app.rollups.catch_up(progress=True))
    realtime = app.settings.realtime
    if realtime.ping_interval_seconds:
        app.spawn(keep_alive(app, realtime.ping_interval_seconds,
                             realtime.ping_timeout_seconds))
    log.info("kpay listening on http://%s:%d with plugins: %s", host, app.port,
             ", ".join(p["name"] for p in app.pm.describe()) or "none")
    return app.port


async def prepare(app: KPay) -> None:
    """Everything before serving: plugins, indexes, jobs, broker, ``on_startup``."""
    await app.register_plugins()
    indexes = [*app.core_indexes(), *await register_all(app.pm, "register_indexes", app)]
    if app.collections is not None:
        check_index_owners(app.pm, app.collections)
    await app.store.create_indexes(indexes)
    if app.dev:
        await dev_clock.restore(app)
    jobs = (app.money.jobs() + app.media.jobs() + app.rollups.jobs()
            + await register_all(app.pm, "register_jobs", app))
    # Leases make each job run once per period across workers and nodes.
    app.scheduler = Scheduler(jobs, enabled=app.settings.scheduler.enabled,
                              leases=JobLeases(app.store, app.node_id))
    app.broker.member = app.node_id
    await app.broker.start()
    await app.notify("on_startup")
    server = app.settings.server
    # Bodies up to max_discard_bytes are read (and dropped past max_body_bytes) so the
    # client gets a 413 envelope; Tornado closes the connection on anything larger.
    # Forwarded headers count only from [server] trusted_proxies; a connection idle
    # (or sending its request head) too long or its body too slowly is closed, and
    # so is one accepted beyond max_connections.
    app.server = KPayHTTPServer(
        make_application(app),
        max_body_size=max(server.max_discard_bytes, server.max_body_bytes),
        idle_connection_timeout=server.idle_connection_timeout_seconds,
        body_timeout=server.body_timeout_seconds,
        max_connections=server.max_connections,
        trusted_proxies=server.trusted_proxies)


def make_application(app: KPay) -> tornado.web.Application:
    """The Tornado application: the routes, the socket, the plugins' and the core's
    static files."""
    realtime = app.settings.realtime
    handlers: list[Any] = tornado_rules(app.routes)
    handlers.append((r"/ws", SocketHandler))
    # Before /static/(.*): a plugin's own pages and files (kpay/core/plugin_static.py).
    handlers.extend(static_rules(app.pm, StaticFiles))
    static = Path(app.settings.server.static_path)
    if static.is_dir():
        handlers.append((r"/()", StaticFiles,
                         {"path": str(static), "default_filename": "index.html"}))
        handlers.append((r"/static/(.*)", StaticFiles,
                         {"path": str(static)}))
    return KPayApplication(
        handlers,
        max_body_bytes=app.settings.server.max_body_bytes,
        # Upload chunks have their own limit ([media] chunk_bytes).
        large_bodies=((CHUNK_PATH, app.media.chunk_size),),
        # img-src and media-src of the Content-Security-Policy every response carries.
        media_origins=app.settings.server.media_origins,
        kpay=app,
        default_handler_class=NotFoundHandler,
        websocket_max_message_size=realtime.max_frame_bytes,
        # Pings come from one keep_alive task (started in start()), not a task per socket.
        websocket_ping_interval=None,
        log_function=log_request,
    )


async def stop(app: KPay) -> None:
    """``KPay.stop``: stop serving, say goodbye to plugins, close connections."""
    app.scheduler.stop()
    if app.server is not None:
        app.server.stop()
    for connection in tuple(app.sockets):
        connection.close(1001, "server stopping")
    # Requests and job runs under way finish (a job run then releases its lease, so
    # the next node need not wait for it to expire: docs/operations.md "Job leases").
    await drain(app, app.settings.server.shutdown_timeout_seconds)
    await app.notify("on_shutdown")
    app.cancel_background_tasks()
    await app.broker.stop()
    await app.media.close()
    await app.store.close()


async def drain(app: KPay, timeout: float) -> None:
    """Wait, at most ``timeout`` seconds, for the requests and jobs under way: no new
    ones start (the server and the scheduler are stopped), and a money write cut off
    half-way would leave its caller guessing. Real time, not the app's clock."""
    deadline = asyncio.get_running_loop().time() + timeout
    while app.requests_in_flight > 0 or app.scheduler.running():
        if asyncio.get_running_loop().time() >= deadline:
            log.warning("stopping with %d request(s) and jobs %s still running after "
                        "%.0fs ([server] shutdown_timeout_seconds)",
                        app.requests_in_flight, app.scheduler.running(), timeout)
            return
        await asyncio.sleep(0.05)
