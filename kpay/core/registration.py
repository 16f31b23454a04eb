"""What the plugins register at start-up (routes, channels, order kinds, providers,
resources, collections) and the indexes of the core's own collections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kpay.core import attention, audit, notifications, users
from kpay.core import audience as audience_module
from kpay.core.access import Access
from kpay.core.analytics import rollups
from kpay.core.leases import LEASES
from kpay.core.media import service as media_service
from kpay.core.money.notify import notify_routes
from kpay.core.plugins import collection_owners, register_all
from kpay.core.realtime.channels import ChannelRegistry
from kpay.core.routes import core_routes
from kpay.core.search import INDEXES as SEARCH_INDEXES
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.app import KPay

CORE_INDEXES = [
    IndexSpec.of("dev_state", "name", unique=True),
    *SEARCH_INDEXES,  # app.search's collection (kpay/core/search.py)
]
# Core collections that have no index of their own (the others are named by
# ``core_indexes``): no plugin may declare one of these.
CORE_COLLECTIONS_WITHOUT_INDEXES = frozenset({"accounts", LEASES})


async def register_plugins(app: KPay) -> None:
    """Collect the plugins' routes, channels, order kinds and payment providers into
    ``app`` (``KPay.register_plugins``)."""
    app.routes = core_routes(app) + await register_all(app.pm, "register_routes", app)
    app.channels = ChannelRegistry(await register_all(app.pm, "register_channels", app))
    app.money.register(
        await register_all(app.pm, "register_order_kinds", app),
        await register_all(app.pm, "register_payment_providers", app),
    )
    app.money.adjustments.register(
        await register_all(app.pm, "register_price_adjusters", app))
    # The core serves each provider's notify routes (docs/money.md, "Notify routes").
    app.routes += notify_routes(app)
    app.access = Access(app, await register_all(app.pm, "register_resources", app))
    core = ({spec.collection for spec in core_indexes(app)} | CORE_COLLECTIONS_WITHOUT_INDEXES
            | media_service.COLLECTIONS_WITHOUT_INDEXES | rollups.COLLECTIONS_WITHOUT_INDEXES)
    app.collections = await collection_owners(app.pm, app, core)
    if app.check_collections:
        app.store.guard = app.collections


def core_indexes(app: KPay) -> list[IndexSpec]:
    """The indexes of the core's own collections."""
    return [*CORE_INDEXES, *attention.INDEXES, *audit.INDEXES, *users.INDEXES,
            *app.money.indexes(), *notifications.INDEXES, *media_service.INDEXES,
            *audience_module.INDEXES, *rollups.INDEXES]
