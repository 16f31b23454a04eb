"""Built-in plugin consult_billing: per-minute 1:1 consultations paid from the wallet.

The hooks below wire the pieces together; see docs/consult_billing.md for the rules.

- profiles.py  consultant rate, minimum/maximum minutes, availability
- sessions.py  consultation documents, request/accept/end, a minute's charge
- meter.py     the BillingEngine: one periodic sweep over sessions that are due
- presence.py  who is on consult:<id>, pause and resume, recovery after a restart
- signalling.py the consult:<id> channel rule (WebRTC offer/answer/ice relay)
- history.py   past consultations and receipts
- handlers.py  the HTTP routes
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from kpay import hookimpl
from kpay.core.scheduler import PeriodicJob
from plugins.consult_billing import handlers, presence, profiles, sessions
from plugins.consult_billing.meter import BillingEngine
from plugins.consult_billing.settings import ConsultBillingSettings
from plugins.consult_billing.signalling import CONSULT_CHANNEL

if TYPE_CHECKING:
    from kpay.core.app import KPay

_engines: WeakKeyDictionary = WeakKeyDictionary()
_trackers: WeakKeyDictionary = WeakKeyDictionary()


def engine_for(app: KPay) -> BillingEngine:
    """The app's one BillingEngine (the plugin module is shared by every app in a
    process, as in the test suite)."""
    if app not in _engines:
        _engines[app] = BillingEngine(app)
    return _engines[app]


def tracker_for(app: KPay) -> presence.PresenceTracker:
    if app not in _trackers:
        _trackers[app] = presence.PresenceTracker(app, engine_for(app))
    return _trackers[app]


@hookimpl
def register_settings():
    return [("consult_billing", ConsultBillingSettings)]


@hookimpl
def register_routes(app):
    return handlers.routes(app)


@hookimpl
def register_channels(app):
    return [CONSULT_CHANNEL]


@hookimpl
def register_indexes(app):
    return sessions.INDEXES + profiles.INDEXES


@hookimpl
def register_jobs(app):
    engine = engine_for(app)
    return [PeriodicJob("consult_billing.meter", engine.sweep,
                        app.settings.consult_billing.engine_interval_seconds)]


@hookimpl
async def on_startup(app):
    await presence.recover(app, engine_for(app))


@hookimpl
async def on_shutdown(app):
    # A clean stop is the last sign of life: time after it is not billed.
    await engine_for(app).heartbeat(app.clock.now())


@hookimpl
async def on_presence(app, channel, user_id, present):
    if channel.startswith("consult:"):
        await tracker_for(app).changed(channel, user_id)
