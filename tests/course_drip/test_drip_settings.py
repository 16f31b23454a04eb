"""The [course_drip] config section: defaults, and bad values stop start-up."""

from __future__ import annotations

import pytest

from kpay.core.config import validate
from kpay.core.errors import ConfigError
from plugins.course_drip.settings import CourseDripSettings

SECTIONS = {"course_drip": CourseDripSettings}
DEV = {"dev": {"enabled": True}}  # so the core needs no auth secret here


def test_defaults():
    settings = validate(DEV, SECTIONS).section("course_drip")
    assert settings.timezone == "Asia/Shanghai" and settings.sweep_interval_seconds == 60


@pytest.mark.parametrize("values, wanted", [
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": "../etc/passwd"}, "timezone"),
    ({"sweep_interval_seconds": 0}, "sweep_interval_seconds"),
    ({"sweep_batch_size": 0}, "sweep_batch_size"),
    ({"surprise": 1}, "unknown key"),
])
def test_bad_values_name_the_key(values, wanted):
    with pytest.raises(ConfigError) as caught:
        validate({**DEV, "course_drip": values}, SECTIONS)
    assert "[course_drip]" in str(caught.value) and wanted in str(caught.value)


def test_another_zone_is_used():
    settings = validate({**DEV, "course_drip": {"timezone": "Europe/Berlin"}}, SECTIONS)
    assert settings.section("course_drip").timezone == "Europe/Berlin"
