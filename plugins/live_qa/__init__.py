"""Built-in plugin live_qa: ticketed live paid Q&A rooms (知乎Live, 千聊, 分答).

A consultant opens a room; students who bought a ticket (order kind ``live_ticket``)
join ``room:<id>`` over WebSocket, ask free or paid questions (``live_question``,
the bounty held in escrow until answered or refunded when the room ends), and replay
everything afterwards. See docs/live_qa.md.

Modules, in the one plugin shape: settings ([live_qa]), store (collections, indexes),
rooms (state, membership), kinds (order kinds), questions, refunds (and the sweep job),
moderation, history (kept events), channel (socket rule, presence), handlers (HTTP).
"""

from __future__ import annotations

from functools import partial

import plugins.live_qa.admin_section as admin_section
import plugins.live_qa.analytics as analytics
import plugins.live_qa.profile_section as profile_section
from kpay import hookimpl
from kpay.core.scheduler import PeriodicJob
from plugins.live_qa import channel as room_channel
from plugins.live_qa import handlers, kinds, notices, refunds, reminders, rooms, sharing, store
from plugins.live_qa.settings import SECTION, LiveQASettings
from plugins.live_qa.storefront import backfill as backfill_search


@hookimpl
def register_settings():
    return [(SECTION, LiveQASettings)]


@hookimpl
def register_routes(app):
    return handlers.routes()


@hookimpl
def register_channels(app):
    return [room_channel.RULE]


@hookimpl
def register_resources(app):
    return [rooms.RESOURCE]


@hookimpl
async def public_profile_sections(app, user_id):
    return await profile_section.rooms_section(app, user_id)


@hookimpl
def register_order_kinds(app):
    return [kinds.LiveTicket(), kinds.LiveQuestion()]


@hookimpl
def register_collections(app):
    return store.COLLECTIONS


@hookimpl
def register_indexes(app):
    return store.INDEXES


@hookimpl
def register_jobs(app):
    return [PeriodicJob("live_qa.refund_sweep", partial(refunds.sweep, app), 60),
            PeriodicJob("live_qa.room_reminders", partial(reminders.remind, app),
                        reminders.JOB_SECONDS)]


@hookimpl
async def on_startup(app):
    await backfill_search(app)


@hookimpl
def on_presence(app, channel):
    room_channel.presence_changed(app, channel)


@hookimpl
def on_shutdown(app):
    room_channel.stop(app)


@hookimpl
def share_card(app, resource, user_id):
    # Only rooms: any other prefix is answered None at once (docs/plugins.md share_card).
    if not resource.startswith("room:"):
        return None
    return sharing.share_card(app, resource.removeprefix("room:"))


@hookimpl
def describe_notification(app, kind, data):
    return notices.describe(app, kind, data)


@hookimpl
async def admin_user_sections(app, user_id):
    return await admin_section.admin_section(app, user_id)


@hookimpl
async def export_user_data(app, user_id):
    return await admin_section.export_data(app, user_id)


@hookimpl
async def anonymise_user(app, user_id):
    return await admin_section.anonymise(app, user_id)


# The audience (docs/audience.md): 参加过直播 (tickets are orders: students already).
@hookimpl
def register_audience_rules(app):
    from plugins.live_qa import audience
    return audience.RULES


@hookimpl
async def analytics_sections(app, owner_id, start, end):
    return await analytics.live_rooms_section(app, owner_id, start, end)
