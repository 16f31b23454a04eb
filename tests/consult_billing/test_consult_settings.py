"""The [consult_billing] section and the plugin's place in the app."""

import pytest

from kpay.core.app import load_settings
from kpay.core.errors import ConfigError

BASE = {"plugins": {"enabled": ["consult_billing"]}, "dev": {"enabled": True}}


def test_defaults():
    settings, _ = load_settings(None, overrides=BASE)
    section = settings.consult_billing
    assert (section.grace_seconds, section.absence_end_seconds,
            section.low_balance_minutes) == (30, 300, 3)


@pytest.mark.parametrize("values, words", [
    ({"grace_seconds": 30, "colour": "red"}, "colour"),
    ({"grace_seconds": 400, "absence_end_seconds": 300}, "absence_end_seconds"),
    ({"engine_concurrency": 0}, "engine_concurrency"),
    ({"low_balance_minutes": -1}, "low_balance_minutes"),
])
def test_bad_settings_stop_start_up(values, words):
    with pytest.raises(ConfigError) as error:
        load_settings(None, overrides={**BASE, "consult_billing": values})
    assert "[consult_billing]" in str(error.value) and words in str(error.value)


@pytest.mark.gen_test
async def test_routes_are_in_openapi(api):
    status, document = await api.get("/api/v1/openapi.json")
    assert status == 200
    for path in ("/api/v1/consultants/me", "/api/v1/consultations",
                 "/api/v1/consultations/{consultation_id}/accept",
                 "/api/v1/consultations/{consultation_id}/receipt"):
        assert path in document["paths"], path
