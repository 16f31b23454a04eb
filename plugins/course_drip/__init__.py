"""Built-in plugin course_drip: courses whose lessons unlock on a drip schedule.

Each student's lessons unlock counted from their own enrollment (``after_days``), on a
fixed date (``at_date``) or when the previous lesson is completed
(``after_previous``). The lock is enforced on the server; one periodic sweep announces
unlocks (``lesson_unlocked`` on ``user:<id>`` and the ``on_user_notification`` hook),
each exactly once. See docs/course_drip.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import plugins.course_drip.admin_section as admin_section
import plugins.course_drip.analytics as analytics
import plugins.course_drip.profile_section as profile_section
from kpay import hookimpl
from plugins.course_drip import courses, enrollments, notices, sharing
from plugins.course_drip.access import RESOURCES
from plugins.course_drip.courses import COURSES, WITHOUT_BODIES
from plugins.course_drip.enrollments import ENROLLMENTS, CourseOrderKind
from plugins.course_drip.handlers import routes
from plugins.course_drip.lesson_routes import lesson_routes
from plugins.course_drip.positions import INDEXES as POSITION_INDEXES
from plugins.course_drip.positions import POSITIONS
from plugins.course_drip.settings import SECTION, CourseDripSettings
from plugins.course_drip.storefront import backfill as backfill_search
from plugins.course_drip.sweep import resume_recomputes, sweep_job

if TYPE_CHECKING:
    from kpay.core.app import KPay


@hookimpl
def register_settings():
    return [(SECTION, CourseDripSettings)]


@hookimpl
def register_routes(app: KPay):
    return [*routes(app), *lesson_routes("/api/v1/courses", ("courses",))]


@hookimpl
def register_resources(app: KPay):
    return RESOURCES


@hookimpl
async def public_profile_sections(app: KPay, user_id: str):
    return await profile_section.courses_section(app, user_id)


@hookimpl
def register_order_kinds(app: KPay):
    return [CourseOrderKind()]


@hookimpl
async def analytics_sections(app: KPay, owner_id, start, end):
    return await analytics.course_funnel(app, owner_id, start, end)


@hookimpl
def register_collections(app: KPay):
    return [COURSES, ENROLLMENTS, POSITIONS]


@hookimpl
def register_indexes(app: KPay):
    return [*courses.INDEXES, *enrollments.INDEXES, *POSITION_INDEXES]


@hookimpl
def register_jobs(app: KPay):
    return [sweep_job(app)]


@hookimpl
async def on_startup(app: KPay):
    await backfill_search(app, app.store[COURSES].find({"status": "published"}, WITHOUT_BODIES))
    await resume_recomputes(app)


@hookimpl
def share_card(app: KPay, resource: str, user_id: str):
    # Only courses: any other prefix is answered None at once (docs/plugins.md share_card).
    if not resource.startswith("course:"):
        return None
    return sharing.share_card(app, resource.removeprefix("course:"), user_id)


@hookimpl
def describe_notification(kind, data):
    return notices.describe(kind, data)


@hookimpl
async def admin_user_sections(app, user_id):
    return await admin_section.admin_section(app, user_id)


@hookimpl
async def export_user_data(app, user_id):
    return await admin_section.export_data(app, user_id)


# The audience (docs/audience.md): 购买过课程, and students enrolled without an order.
@hookimpl
def register_audience_rules(app: KPay):
    from plugins.course_drip import audience
    return audience.RULES


@hookimpl
def audience_students(app: KPay, consultant_id: str):
    from plugins.course_drip import audience
    return audience.students(app, consultant_id)
