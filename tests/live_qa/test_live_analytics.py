"""Live rooms on the host's dashboard (hook ``analytics_sections``): ticket holders and
questions per room; ticket sales in the revenue."""

from __future__ import annotations

import pytest

DASHBOARD = "/api/v1/analytics/dashboard"


@pytest.mark.gen_test(timeout=60)
async def test_rooms_attendance_and_questions_on_the_hosts_dashboard(api, live):
    host = await live.host()
    room = await live.room(host)
    amy = await live.student("amy", room, funds=5000)
    await live.student("bob", room, funds=5000)
    status, body = await live.ask_paid(amy, room, "怎么准备群面？", 500)
    assert status == 201, body
    host = await live.host()
    status, data = await api.get(DASHBOARD, host)
    assert status == 200, data
    section = next(s for s in data["sections"] if s["key"] == "live_rooms")
    assert section["items"] == [{"label": "如何准备面试", "value": 2, "note": "1 个提问"}]
    assert data["revenue"]["totals"]["sales"] == 2 * 990
    assert {k["kind"]: k["count"] for k in data["orders_by_kind"]}["live_ticket"] == 2
    other = await live.host("other_host")
    status, data = await api.get(DASHBOARD, other)
    assert all(s["key"] != "live_rooms" for s in data["sections"])
