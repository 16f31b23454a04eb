"""The coupons routes: who may create what, every bound on a write, listing, disabling,
and the ``[coupons]`` settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from coupon_helpers import COUPONS, PLUGINS, coupon_body, make_coupon

from kpay.core.app import load_settings
from kpay.core.errors import ConfigError


@pytest.fixture
def coupon_settings() -> dict:
    return {"max_active_per_seller": 3, "max_uses": 100, "max_valid_days": 30}


@pytest.mark.gen_test
async def test_a_seller_creates_lists_and_disables_coupons(kpay_app, consultant, admin):
    made = await make_coupon(kpay_app, consultant, "SPRING", min_amount=1000, per_user=2)
    assert made == {
        "code": "SPRING", "created_by": "carol", "seller": "carol", "funded_by": "seller",
        "off_fen": 500, "off_percent": None, "free_minutes": None, "label": "减 5.00 元",
        "min_amount": 1000, "expires_at": made["expires_at"], "max_uses": 10, "used": 0,
        "per_user": 2, "kinds": ["live_ticket", "course"], "max_off_fen": None, "disabled": False,
        "created_at": made["created_at"]}
    await make_coupon(kpay_app, consultant, "MIN20", off_percent=20)
    await make_coupon(kpay_app, admin, "PLATFORM", free_minutes=5, funded_by="platform")
    status, body = await consultant.get(COUPONS)
    assert status == 200
    assert [(c["code"], c["kinds"]) for c in body["coupons"]] == [
        ("MIN20", ["live_ticket", "course", "consultation"]), ("SPRING", ["live_ticket", "course"])]
    status, body = await admin.get(COUPONS)
    assert [(c["code"], c["seller"], c["label"]) for c in body["coupons"]] == [
        ("PLATFORM", None, "免费 5 分钟")]
    for _ in range(2):  # idempotent
        status, body = await consultant.post(f"{COUPONS}/SPRING/disable")
        assert status == 200 and body["coupon"]["disabled"] is True, body
    status, body = await admin.post(f"{COUPONS}/MIN20/disable")
    assert status == 200 and body["coupon"]["disabled"] is True


@pytest.mark.gen_test
async def test_who_may_do_what(kpay_app, api, student, consultant, admin):
    dave = await api.as_user("dave", "consultant")
    await make_coupon(kpay_app, consultant, "CAROL")
    refused = [
        (student, coupon_body(kpay_app, "STUDENT"), 403, "forbidden"),
        (consultant, coupon_body(kpay_app, "PLATFORM", funded_by="platform"), 403, "admin_only"),
        (dave, coupon_body(kpay_app, "CAROL"), 409, "coupon_code_taken"),
    ]
    for client, body, status, code in refused:
        got, reply = await client.post(COUPONS, body)
        assert (got, reply["error"]["code"]) == (status, code), reply
    assert (await student.get(COUPONS))[0] == 403
    assert (await api.get(COUPONS))[0] == 401
    status, body = await dave.post(f"{COUPONS}/CAROL/disable")
    assert (status, body["error"]["code"]) == (404, "coupon_not_found")
    status, body = await consultant.post(f"{COUPONS}/NOSUCH/disable")
    assert (status, body["error"]["code"]) == (404, "coupon_not_found")
    assert (await dave.get(COUPONS))[1]["coupons"] == []
    assert await kpay_app.store["coupons"].count_documents({}) == 1


@pytest.mark.gen_test
async def test_every_field_is_bounded(kpay_app, consultant):
    now = kpay_app.clock.now()
    bad = [
        ({"code": "ABC"}, "code"),
        ({"code": "A" * 17}, "code"),
        ({"code": "spring"}, "code"),
        ({"code": "SPR-NG"}, "code"),
        ({"off_fen": 0}, "off_fen"),
        ({"off_fen": "500"}, "off_fen"),
        ({"off_fen": 10_000_001}, "off_fen"),
        ({"off_percent": 0}, "off_percent"),
        ({"off_percent": 101}, "off_percent"),
        ({"off_percent": 20.5}, "off_percent"),
        ({"free_minutes": 601}, "free_minutes"),
        ({"off_fen": 100, "off_percent": 10}, "off_fen"),
        ({"off_fen": None}, "off_fen"),
        ({"min_amount": -1}, "min_amount"),
        ({"max_uses": 0}, "max_uses"),
        ({"max_uses": 101}, "max_uses"),  # [coupons] max_uses
        ({"per_user": 0}, "per_user"),
        ({"per_user": 101}, "per_user"),
        ({"expires_at": now.isoformat()}, "expires_at"),
        ({"expires_at": (now + timedelta(days=31)).isoformat()}, "expires_at"),
        ({"expires_at": "2026-03-09T10:00:00"}, "expires_at"),  # no offset
        ({"kinds": []}, "kinds"),
        ({"kinds": ["Live"]}, "kinds.0"),
        ({"kinds": ["x"] * 9}, "kinds"),
        ({"kinds": ["consultation"]}, "kinds"),  # fen off is for orders
        ({"off_fen": None, "free_minutes": 3, "kinds": ["course"]}, "kinds"),
        ({"funded_by": "pro_rata"}, "funded_by"),
        ({"seller": "dave"}, "seller"),
    ]
    for fields, field in bad:
        body = {**coupon_body(kpay_app, "SPRING"), **fields}
        status, reply = await consultant.post(COUPONS, body)
        assert (status, reply["error"]["code"], reply["error"]["field"]) == (
            400, "invalid_field", field), (fields, reply)
    assert await kpay_app.store["coupons"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_a_seller_has_at_most_so_many_active_coupons(kpay_app, clock, consultant):
    await make_coupon(kpay_app, consultant, "SOON",
                      expires_at=(clock.now() + timedelta(hours=1)).isoformat())
    for code in ("TWO2", "THREE3"):
        await make_coupon(kpay_app, consultant, code)
    status, body = await consultant.post(COUPONS, coupon_body(kpay_app, "FOUR4"))
    assert (status, body["error"]["code"], body["error"]["what"], body["error"]["limit"]) == (
        409, "too_many_open", "active_coupons", 3)
    # A disabled or expired coupon is no longer active.
    await consultant.post(f"{COUPONS}/TWO2/disable")
    await make_coupon(kpay_app, consultant, "FOUR4")
    await clock.advance(3601)
    await make_coupon(kpay_app, consultant, "FIVE5")
    status, body = await consultant.post(COUPONS, coupon_body(kpay_app, "SIX6"))
    assert status == 409


@pytest.mark.parametrize(("section", "named"), [
    ({"max_active_per_seller": 0}, "[coupons] max_active_per_seller"),
    ({"max_uses": 20_001}, "[coupons] max_uses"),
    ({"max_per_seller": 5}, "[coupons] max_per_seller"),
])
def test_bad_settings_stop_start_up_naming_the_key(section, named):
    overrides = {"plugins": {"enabled": PLUGINS}, "dev": {"enabled": True}, "coupons": section}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, overrides=overrides)
    assert named in str(caught.value)


@pytest.mark.gen_test
async def test_the_routes_are_in_the_api_document(api):
    status, document = await api.get("/api/v1/openapi.json")
    assert status == 200
    paths = document["paths"]
    assert set(paths["/api/v1/coupons"]) >= {"get", "post"}
    assert "post" in paths["/api/v1/coupons/{code}/disable"]
