"""Running kpay as a process (``kpay serve``, ``server.py``): one app in this process,
or a supervisor of worker processes (kpay/core/workers.py, docs/operations.md
"Workers"), each serving until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable

from kpay.core import config as config_module
from kpay.core.app import KPay, check_startup, load_settings
from kpay.core.config import Settings
from kpay.core.logs import configure_logging
from kpay.core.plugins import PluginManager
from kpay.core.store import database_uri

log = logging.getLogger("kpay")


def main(config_path: str | None = None, port: int | None = None,
         workers: int | str | None = None) -> int:
    """Run the server until SIGINT/SIGTERM (``kpay serve`` and ``server.py``): in this
    process, or as several worker processes under a supervisor (kpay/core/workers.py)."""
    settings, pm = load_settings(config_path)
    configure_logging(settings.logging.level)
    from kpay.core import workers as workers_module

    count = workers_module.worker_count(settings, workers)
    if count > 1:
        # What each worker would refuse, refused once here (and a dev secret generated
        # once, not raced by the workers).
        asyncio.run(check_startup(settings, pm, config_module.var_dir()))
        return workers_module.Supervisor(settings, config_path, count, port).run()
    with database_uri(settings.mongodb) as uri:
        asyncio.run(serve(settings, pm, uri, port))
    return 0


async def serve(settings: Settings, pm: PluginManager, uri: str, port: int | None,
                 sockets: list[socket.socket] | None = None, worker: int | None = None,
                 started: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; ``started()`` is called once the app listens."""
    app = KPay(settings, pm, uri, var_dir=config_module.var_dir())
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await app.start(port=port, sockets=sockets, worker=worker)
    if started is not None:
        started()
    await stopping.wait()
    log.info("kpay stopping")
    await app.stop()
