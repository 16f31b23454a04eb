"""Consultation minutes on the consultant's dashboard (hook ``analytics_sections``), and
the minutes' money in its revenue."""

from __future__ import annotations

import pytest
from consult_helpers import live_session

DASHBOARD = "/api/v1/analytics/dashboard"


@pytest.mark.gen_test(timeout=60)
async def test_billed_minutes_show_on_the_consultants_dashboard(api, kpay_app):
    _, s_ws, c_ws = await live_session(api, rate=100, wallet=300)
    await s_ws.event("tick")
    for _ in range(3):
        await kpay_app.advance_clock(60)
    ended = await c_ws.event("ended")
    assert ended["data"]["summary"]["billed_minutes"] == 3
    consultant = await api.login("con", "consultant")
    status, data = await api.get(DASHBOARD, consultant)
    assert status == 200, data
    section = next(s for s in data["sections"] if s["key"] == "consult_minutes")
    assert section["unit"] == "minutes"
    assert section["items"] == [{"label": "计费分钟", "value": 3, "note": "1 次咨询"}]
    assert data["revenue"]["totals"]["sales"] == 300
    stranger = await api.login("other_con", "consultant")
    status, data = await api.get(DASHBOARD, stranger)
    assert all(s["key"] != "consult_minutes" for s in data["sections"])
