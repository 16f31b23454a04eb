"""Release rules: when each lesson opens for one student. Pure functions, no I/O.

A lesson's ``release`` is one of three rules:

- ``{"after_days": n, "at": "HH:MM"}``: n calendar days after enrollment, counted in
  the configured time zone, at that local time. Without ``at`` it opens at the local
  time of day the student enrolled. Day 0 opens at enrollment, whatever its ``at``.
  Enrolling at 23:59 Beijing time with
  ``{"after_days": 1, "at": "08:00"}`` opens the lesson at 08:00 Beijing time the next
  calendar day (8 hours and 1 minute later), not 24 hours later.
- ``{"at_date": iso}``: a fixed moment for everyone (cohorts). A date alone means
  00:00 that day; a time without an offset is read in the configured zone. It is
  stored resolved, with its offset, so a later time-zone change does not move it.
- ``{"after_previous": true}``: when the student completes the previous lesson.

:func:`lesson_states` turns a course's rules and one student's enrollment into
``(lesson_id, unlocked, unlocks_at)`` for every lesson at a given moment; the lock
on the server, the lesson list and the unlock sweep all read it from here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

MAX_AFTER_DAYS = 3650
#: Dates an author may set: far outside this, date arithmetic overflows (year 1 at
#: +14:00 has no UTC moment) and one course could break every student's sweep.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2099
HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
RULE_KEYS = ({"after_days"}, {"after_days", "at"}, {"at_date"}, {"after_previous"})


class ReleaseRuleError(ValueError):
    """A release rule is malformed; ``field`` names the part at fault."""

    def __init__(self, message: str, field: str = "release") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LessonState:
    lesson_id: str
    unlocked: bool
    #: When the lesson opens (or opened) for this student, UTC; None while unknown
    #: (an ``after_previous`` lesson whose previous lesson is not completed yet).
    unlocks_at: datetime | None


def parse_rule(raw: Any, zone: ZoneInfo, field: str = "release") -> dict[str, Any]:
    """Validate one rule and return it normalised for storage; raise ReleaseRuleError."""
    if not isinstance(raw, Mapping):
        raise ReleaseRuleError("a release rule must be an object", field)
    keys = set(raw)
    if keys not in RULE_KEYS:
        raise ReleaseRuleError(
            f"unknown release rule with keys {sorted(keys)}; use "
            '{"after_days": n, "at": "HH:MM"}, {"at_date": iso} or {"after_previous": true}',
            field)
    if "after_days" in raw:
        days = raw["after_days"]
        if not isinstance(days, int) or isinstance(days, bool):
            raise ReleaseRuleError("after_days must be a whole number", f"{field}.after_days")
        if not 0 <= days <= MAX_AFTER_DAYS:
            raise ReleaseRuleError(f"after_days must be between 0 and {MAX_AFTER_DAYS}",
                                   f"{field}.after_days")
        rule: dict[str, Any] = {"after_days": days}
        if "at" in raw:
            at = raw["at"]
            if not isinstance(at, str) or not HH_MM.match(at):
                raise ReleaseRuleError("at must be a local time HH:MM from 00:00 to 23:59",
                                       f"{field}.at")
            rule["at"] = at
        return rule
    if "at_date" in raw:
        return {"at_date": resolve_at_date(raw["at_date"], zone, f"{field}.at_date").isoformat()}
    if raw["after_previous"] is not True:
        raise ReleaseRuleError("after_previous must be true", f"{field}.after_previous")
    return {"after_previous": True}


def resolve_at_date(value: Any, zone: ZoneInfo, field: str = "at_date") -> datetime:
    """An ISO 8601 date or date-time as an aware moment (naive ones in ``zone``)."""
    if not isinstance(value, str) or not value:
        raise ReleaseRuleError("at_date must be an ISO 8601 date or date-time string", field)
    try:
        if "T" not in value and " " not in value:
            moment = datetime.combine(date.fromisoformat(value), time())
        else:
            moment = datetime.fromisoformat(value)
    except ValueError:
        raise ReleaseRuleError(f"at_date {value!r} is not an ISO 8601 date or date-time",
                               field) from None
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise ReleaseRuleError(
            f"at_date must be between {EARLIEST_YEAR} and {LATEST_YEAR}", field)
    if moment.tzinfo is None:
        moment = local_moment(moment.date(), moment.time(), zone)
    return moment


def at_date_moment(rule: Mapping[str, Any]) -> datetime | None:
    """A stored ``at_date`` as UTC; None (never opens by date) for a value stored before
    dates were bounded that has no UTC moment, so it cannot break the lesson list."""
    try:
        return datetime.fromisoformat(rule["at_date"]).astimezone(UTC)
    except (ValueError, OverflowError, TypeError):
        return None


def check_chain(rules: Sequence[Mapping[str, Any]], field: str = "lessons") -> None:
    """Rules that only make sense in order: the first lesson has no previous lesson."""
    if rules and rules[0].get("after_previous"):
        raise ReleaseRuleError("the first lesson cannot be released after_previous: "
                               "it has no previous lesson", f"{field}.0.release")


def local_moment(day: date, at: time, zone: ZoneInfo) -> datetime:
    """``day`` at wall-clock ``at`` in ``zone``, as an aware UTC datetime.

    A wall-clock time that does not exist (skipped by a DST change) is read with the
    offset before the change, i.e. it lands just after the gap; a repeated one takes
    its first occurrence. Asia/Shanghai has neither.
    """
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def after_days_moment(rule: Mapping[str, Any], enrolled_at: datetime, zone: ZoneInfo) -> datetime:
    """When an ``after_days`` lesson opens: calendar days in ``zone``, then the local time.

    Day 0 opens at enrollment whatever its ``at``: a student who pays at 02:50 reads
    the first lesson at once, not at 08:00 (``at`` applies from day 1)."""
    if rule["after_days"] == 0:
        return enrolled_at.astimezone(UTC)
    enrolled_local = enrolled_at.astimezone(zone)
    day = enrolled_local.date() + timedelta(days=rule["after_days"])
    if "at" in rule:
        hours, minutes = (int(part) for part in rule["at"].split(":"))
        at = time(hours, minutes)
    else:
        at = enrolled_local.time().replace(tzinfo=None)
    return local_moment(day, at, zone)


def lesson_states(lessons: Sequence[Mapping[str, Any]], enrolled_at: datetime,
                  completed: Mapping[str, datetime], unlocked_all_at: datetime | None,
                  now: datetime, zone: ZoneInfo) -> list[LessonState]:
    """Every lesson's state for one student at ``now``.

    ``lessons`` in course order, each ``{"id", "release"}``; ``completed`` maps lesson
    ids to completion times; ``unlocked_all_at`` is when the author opened everything
    for this student (None if never). An ``after_previous`` lesson opens when the
    previous lesson was completed.
    """
    states: list[LessonState] = []
    previous_id: str | None = None
    for lesson in lessons:
        rule = lesson["release"]
        opens: datetime | None
        if "after_days" in rule:
            opens = after_days_moment(rule, enrolled_at, zone)
        elif "at_date" in rule:
            opens = at_date_moment(rule)
        else:
            opens = completed.get(previous_id) if previous_id is not None else None
        if unlocked_all_at is not None and (opens is None or unlocked_all_at < opens):
            opens = unlocked_all_at
        states.append(LessonState(lesson["id"], opens is not None and opens <= now, opens))
        previous_id = lesson["id"]
    return states


def next_unlock(states: Sequence[LessonState], notified: set[str] | frozenset[str],
                ) -> datetime | None:
    """The earliest known opening among lessons not announced yet, or None.

    This is what the enrollment stores as ``next_unlock_at``: the sweep picks the
    enrollment up once it has passed. Lessons whose time is unknown are left out;
    completing the previous lesson recomputes it.
    """
    pending = [s.unlocks_at for s in states
               if s.lesson_id not in notified and s.unlocks_at is not None]
    return min(pending) if pending else None


def due_lessons(states: Sequence[LessonState], notified: set[str] | frozenset[str]) -> list[str]:
    """Lessons that are open and not announced yet, in course order."""
    return [s.lesson_id for s in states if s.unlocked and s.lesson_id not in notified]
