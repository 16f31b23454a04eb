"""Unit tests of the release rules (pure functions, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from plugins.course_drip.release import (
    ReleaseRuleError,
    after_days_moment,
    check_chain,
    due_lessons,
    lesson_states,
    next_unlock,
    parse_rule,
)

BEIJING = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize("raw, field", [
    ({"after_days": -1, "at": "08:00"}, "release.after_days"),
    ({"after_days": 1.5}, "release.after_days"),
    ({"after_days": True}, "release.after_days"),
    ({"after_days": "1"}, "release.after_days"),
    ({"after_days": 1, "at": "25:00"}, "release.at"),
    ({"after_days": 1, "at": "8:00"}, "release.at"),
    ({"after_days": 1, "at": "08:60"}, "release.at"),
    ({"after_days": 1, "at": 800}, "release.at"),
    ({"after_days": 1, "when": "08:00"}, "release"),
    ({"after_days": 1, "at_date": "2026-12-01"}, "release"),
    ({}, "release"),
    ({"after_previous": False}, "release.after_previous"),
    ({"after_previous": 1}, "release.after_previous"),
    ({"at_date": "next monday"}, "release.at_date"),
    ({"at_date": "2026-13-01"}, "release.at_date"),
    ({"at_date": 20261201}, "release.at_date"),
    ("after_days", "release"),
])
def test_bad_rules_are_refused_naming_the_field(raw, field):
    with pytest.raises(ReleaseRuleError) as caught:
        parse_rule(raw, BEIJING)
    assert caught.value.field == field


def test_rules_are_normalised():
    assert parse_rule({"after_days": 3, "at": "08:00"}, BEIJING) == {"after_days": 3,
                                                                      "at": "08:00"}
    assert parse_rule({"after_previous": True}, BEIJING) == {"after_previous": True}
    # A date alone is midnight in the configured zone; naive times are local; offsets kept.
    assert parse_rule({"at_date": "2026-12-01"}, BEIJING) == {
        "at_date": "2026-11-30T16:00:00+00:00"}
    assert parse_rule({"at_date": "2026-12-01T20:00"}, BEIJING) == {
        "at_date": "2026-12-01T12:00:00+00:00"}
    assert parse_rule({"at_date": "2026-12-01T20:00:00+09:00"}, BEIJING) == {
        "at_date": "2026-12-01T20:00:00+09:00"}


def test_after_previous_cannot_be_first():
    with pytest.raises(ReleaseRuleError) as caught:
        check_chain([{"after_previous": True}, {"after_days": 0}])
    assert caught.value.field == "lessons.0.release"
    check_chain([{"after_days": 0}, {"after_previous": True}])


def test_enrolling_at_2359_beijing_counts_calendar_days():
    enrolled = datetime(2026, 11, 26, 23, 59, tzinfo=BEIJING).astimezone(UTC)
    opens = after_days_moment({"after_days": 1, "at": "08:00"}, enrolled, BEIJING)
    assert opens == datetime(2026, 11, 27, 8, 0, tzinfo=BEIJING)
    assert opens - enrolled == timedelta(hours=8, minutes=1)
    # Same instant, 00:01 the next Beijing day: the lesson is a full day later.
    later = enrolled + timedelta(minutes=2)
    assert after_days_moment({"after_days": 1, "at": "08:00"}, later, BEIJING) == datetime(
        2026, 11, 28, 8, 0, tzinfo=BEIJING)


@pytest.mark.parametrize("hour,minute", [(2, 50), (0, 1), (7, 59), (8, 0), (23, 59)])
def test_day_0_opens_at_enrollment_whatever_its_at(hour, minute):
    enrolled = datetime(2026, 3, 2, hour, minute, tzinfo=BEIJING).astimezone(UTC)
    for at in ("08:00", "00:00", "23:59"):
        assert after_days_moment({"after_days": 0, "at": at}, enrolled, BEIJING) == enrolled
    # ``at`` applies from day 1: the next calendar day at 08:00.
    assert after_days_moment({"after_days": 1, "at": "08:00"}, enrolled, BEIJING) == datetime(
        2026, 3, 3, 8, 0, tzinfo=BEIJING)


def test_after_days_without_at_keeps_the_time_of_day():
    enrolled = datetime(2026, 11, 26, 10, 30, tzinfo=BEIJING)
    assert after_days_moment({"after_days": 2}, enrolled, BEIJING) == datetime(
        2026, 11, 28, 10, 30, tzinfo=BEIJING)
    assert after_days_moment({"after_days": 0}, enrolled, BEIJING) == enrolled


def test_calendar_days_across_a_dst_change():
    # New York springs forward on 2026-03-08: the day has 23 hours, 08:00 stays 08:00.
    enrolled = datetime(2026, 3, 7, 9, 0, tzinfo=NEW_YORK)
    opens = after_days_moment({"after_days": 1, "at": "08:00"}, enrolled, NEW_YORK)
    assert opens.astimezone(NEW_YORK).hour == 8
    assert opens - enrolled == timedelta(hours=22)
    # 02:30 does not exist that day: it lands just after the gap, at 03:30 EDT.
    gap = after_days_moment({"after_days": 1, "at": "02:30"}, enrolled, NEW_YORK)
    assert gap.astimezone(NEW_YORK).strftime("%H:%M %Z") == "03:30 EDT"


def lessons(*rules):
    return [{"id": f"l{i}", "release": rule} for i, rule in enumerate(rules)]


def test_states_for_all_three_rules_and_the_override():
    enrolled = datetime(2026, 11, 26, 10, 0, tzinfo=BEIJING).astimezone(UTC)
    course = lessons({"after_days": 0}, {"after_days": 1, "at": "08:00"},
                     {"at_date": "2026-12-01T00:00:00+08:00"}, {"after_previous": True})
    now = enrolled + timedelta(hours=1)
    states = lesson_states(course, enrolled, {}, None, now, BEIJING)
    assert [s.unlocked for s in states] == [True, False, False, False]
    assert states[1].unlocks_at == datetime(2026, 11, 27, 8, 0, tzinfo=BEIJING)
    assert states[3].unlocks_at is None
    assert next_unlock(states, {"l0"}) == states[1].unlocks_at
    # Completing l2 (once open) opens l3 at that moment.
    done = datetime(2026, 12, 1, 9, 0, tzinfo=BEIJING)
    states = lesson_states(course, enrolled, {"l2": done}, None, done, BEIJING)
    assert [s.unlocked for s in states] == [True, True, True, True]
    assert due_lessons(states, {"l0", "l1"}) == ["l2", "l3"]
    # The override opens everything from its moment on; earlier lessons keep their time.
    states = lesson_states(course, enrolled, {}, now, now, BEIJING)
    assert all(s.unlocked for s in states)
    assert states[0].unlocks_at == enrolled and states[3].unlocks_at == now
    assert next_unlock(states, {"l0", "l1", "l2", "l3"}) is None
