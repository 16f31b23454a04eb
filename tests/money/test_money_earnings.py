"""GET /api/v1/earnings: the caller's earnings account, after the platform fee."""

import pytest

from kpay.core.money import accounts


@pytest.mark.gen_test
async def test_earnings_show_what_was_credited_to_the_caller(api, kpay_app):
    token = await api.login("coach", "consultant")
    status, empty = await api.get("/api/v1/earnings", token=token)
    assert status == 200 and empty == {"balance": 0, "entries": [], "next_before": None}

    credits = kpay_app.money.earnings_credits(1001, "coach")
    await kpay_app.money.ledger.post("test:earn:1", [("external:test", -1001), *credits], "课程")
    earned = dict(credits)[accounts.earnings("coach")]
    status, page = await api.get("/api/v1/earnings?limit=1", token=token)
    assert status == 200
    assert page["balance"] == earned and 0 < earned < 1001
    assert [e["amount"] for e in page["entries"]] == [earned]
    assert page["next_before"] == "test:earn:1"

    other = await api.login("someone", "consultant")
    status, theirs = await api.get("/api/v1/earnings", token=other)
    assert theirs["balance"] == 0 and theirs["entries"] == []


@pytest.mark.gen_test
async def test_earnings_need_a_token_and_a_sane_limit(api):
    status, body = await api.get("/api/v1/earnings")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    token = await api.login("coach", "consultant")
    status, body = await api.get("/api/v1/earnings?limit=0", token=token)
    assert status == 400 and body["error"]["field"] == "limit"
