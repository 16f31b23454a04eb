"""Built-in plugin consult_billing: per-minute 1:1 consultations paid from the wallet.

The hooks below wire the pieces together; see docs/consult_billing.md for the rules.

- profiles.py  consultant rate, minimum/maximum minutes, availability
- sessions.py  consultation documents, their guarded state changes, the end
- lifecycle.py request, accept, decline, end by a party
- charges.py   charging minutes, one session alone or many in one transaction
- meter.py     the BillingEngine: one periodic sweep over sessions that are due
- presence.py  who is on consult:<id> on which process, pause and resume
- nodes.py     which processes of the deployment are alive
- restarts.py  processes starting, stopping and dying
- signalling.py the consult:<id> channel rule (WebRTC offer/answer/ice relay)
- history.py   past consultations and receipts
- handlers.py  the HTTP routes
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import plugins.consult_billing.admin_section as admin_section
import plugins.consult_billing.analytics as analytics
import plugins.consult_billing.profile_section as profile_section
from kpay import hookimpl
from kpay.core.scheduler import PeriodicJob
from plugins.consult_billing import handlers, notices, presence, profiles, restarts, sessions
from plugins.consult_billing.meter import ENGINE_STATE, BillingEngine
from plugins.consult_billing.nodes import NODES
from plugins.consult_billing.settings import ConsultBillingSettings
from plugins.consult_billing.signalling import CONSULT_CHANNEL
from plugins.consult_billing.storefront import backfill as backfill_search

if TYPE_CHECKING:
    from kpay.core.app import KPay

def engine_for(app: KPay) -> BillingEngine:
    """The app's one BillingEngine (the plugin module is shared by every app in a
    process, as in the test suite)."""
    return app.plugin_state("consult_billing.engine", lambda: BillingEngine(app))


def tracker_for(app: KPay) -> presence.PresenceTracker:
    return app.plugin_state("consult_billing.presence",
                            lambda: presence.PresenceTracker(app, engine_for(app)))


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
def register_resources(app):
    return [sessions.RESOURCE]


@hookimpl
async def public_profile_sections(app, user_id):
    return await profile_section.consult_section(app, user_id)


@hookimpl
def register_collections(app):
    return [sessions.CONSULTATIONS, profiles.PROFILES, NODES, ENGINE_STATE]


@hookimpl
def register_indexes(app):
    return sessions.INDEXES + profiles.INDEXES


@hookimpl
def register_jobs(app):
    engine, settings = engine_for(app), app.settings.consult_billing

    async def forget_gone_members() -> None:
        await restarts.forget_gone_members(app, tracker_for(app))

    return [PeriodicJob("consult_billing.meter", engine.sweep,
                        settings.engine_interval_seconds),
            PeriodicJob("consult_billing.nodes", forget_gone_members,
                        settings.node_timeout_seconds / 6)]


@hookimpl
async def on_startup(app):
    await backfill_search(app, app.store[profiles.PROFILES].find({}))
    tracker = tracker_for(app)
    try:
        await restarts.recover(app, engine_for(app), tracker)
    finally:
        # Even if the recovery failed: a process that does not beat is taken as gone.
        tracker.beating = app.spawn(restarts.keep_beating(app, tracker))


@hookimpl
async def on_shutdown(app):
    await restarts.stop(app, engine_for(app), tracker_for(app))


@hookimpl
async def on_presence(app, channel, user_id, present):
    if channel.startswith("consult:"):
        await tracker_for(app).changed(channel, user_id)


@hookimpl
def describe_notification(app, user_id, kind, data):
    return notices.describe(app, user_id, kind, data)


@hookimpl
async def admin_user_sections(app, user_id):
    return await admin_section.admin_section(app, user_id)


@hookimpl
async def export_user_data(app, user_id):
    return await admin_section.export_data(app, user_id)


@hookimpl
async def anonymise_user(app, user_id):
    return await admin_section.anonymise(app, user_id)


# The audience (docs/audience.md): 咨询过, and those students (minutes are not orders).
@hookimpl
def register_audience_rules(app):
    from plugins.consult_billing import audience
    return audience.RULES


@hookimpl
def audience_students(app, consultant_id):
    from plugins.consult_billing import audience
    return audience.consulted(app, consultant_id)


@hookimpl
async def analytics_sections(app, owner_id, start, end):
    return await analytics.minutes_section(app, owner_id, start, end)
