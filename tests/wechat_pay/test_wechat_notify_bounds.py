"""The notify records (``wechat_notifies``) are bounded: by age, with a TTL index on a
time the database itself writes, and by size, with a capped body (a hash of the
whole) and little of anything unverified. Booking once does not depend on them."""

from __future__ import annotations

import asyncio
import hashlib

import bson
import pytest
from wechat_helpers import NOTIFY, REFUND_NOTIFY, create_order, ledger_count, notifies, post_xml

from kpay.core.errors import ConfigError

DAY = 86_400


async def pending_order(api, fake_wechat, amount=800):
    token = await api.login("bob")
    order = (await create_order(api, token, "native", amount))["order"]
    return token, order


async def database_now(kpay_app):
    """The database's own clock, read the way the records are stamped."""
    probe = kpay_app.store["clock_probe"]
    await probe.update_one({"_id": 1}, {"$currentDate": {"at": True}}, upsert=True)
    return (await probe.find_one({"_id": 1}))["at"]


async def ttl_index(kpay_app):
    info = await kpay_app.store["wechat_notifies"].index_information()
    return {name: index for name, index in info.items() if "expireAfterSeconds" in index}


@pytest.mark.gen_test(timeout=30)
async def test_records_expire_by_a_ttl_on_the_database_clock(api, kpay_app, fake_wechat):
    _, order = await pending_order(api, fake_wechat)
    before = await database_now(kpay_app)
    status, answer = await post_xml(api, NOTIFY, fake_wechat.payment_notify(
        order["out_trade_no"]))
    assert status == 200 and answer["return_code"] == "SUCCESS"
    after = await database_now(kpay_app)
    [record] = await notifies(kpay_app)
    # Stamped by the database, not by the app's clock (pinned elsewhere in tests, and
    # movable in dev mode): the TTL judges it against the database's clock.
    assert before <= record["stored_at"] <= after
    [index] = (await ttl_index(kpay_app)).values()
    assert [key for key, _ in index["key"]] == ["stored_at"]
    assert index["expireAfterSeconds"] == 30 * DAY


@pytest.mark.gen_test(timeout=30)
async def test_a_changed_retention_is_applied_to_the_existing_index(kpay_app, kpay_settings):
    assert [i["expireAfterSeconds"] for i in (await ttl_index(kpay_app)).values()] == [30 * DAY]
    settings = kpay_settings.settings.replace("wechat_pay", notify_retention_days=7)
    restarted = kpay_settings.new_app(settings)
    await restarted.start()  # MongoDB would refuse to re-create the index with 7 days
    try:
        [index] = (await ttl_index(kpay_app)).values()
        assert index["expireAfterSeconds"] == 7 * DAY
    finally:
        await restarted.stop()


def test_retention_stays_well_above_wechats_retry_window():
    from kpay.core.app import load_settings
    from plugins.wechat_pay.settings import WeChatPaySettings

    assert WeChatPaySettings().notify_retention_days == 30
    assert WeChatPaySettings().notify_body_bytes == 4096
    # WeChat resends for about 24 hours: less than 3 days is refused.
    with pytest.raises(ConfigError, match=r"\[wechat_pay\] notify_retention_days: Input "
                                          r"should be greater than or equal to 3"):
        load_settings(None, overrides={"plugins": {"enabled": ["wechat_pay"]},
                                       "wechat_pay": {"notify_retention_days": 1}})


@pytest.mark.gen_test(timeout=30)
async def test_a_verified_body_is_kept_up_to_the_cap_with_its_hash(api, kpay_app, fake_wechat):
    _, order = await pending_order(api, fake_wechat)
    # A genuine, signed notify with a long attach field (up to 127 bytes at WeChat; a
    # larger one stands for any oversized body).
    body = fake_wechat.payment_notify(order["out_trade_no"], attach="a" * 10_000).encode()
    status, answer = await post_xml(api, NOTIFY, body)
    assert status == 200 and answer["return_code"] == "SUCCESS"
    [record] = await notifies(kpay_app)
    assert record["verdict"] == "paid" and record["verified"] is True
    assert record["body"].encode() == body[:4096]
    assert record["body_bytes"] == len(body) and record["body_truncated"] is True
    assert record["body_sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", ["unparsable", "bad_signature", "refund"])
async def test_unverified_bodies_are_never_stored_in_full(api, kpay_app, fake_wechat, kind):
    _, order = await pending_order(api, fake_wechat)
    if kind == "unparsable":
        body, path = ("<xml>" + "<a>x</a>" * 100_000 + "</xml>").encode(), NOTIFY
    elif kind == "bad_signature":
        # Attacker-chosen fields are clipped too: they were never vouched for.
        body, path = fake_wechat.payment_notify(
            order["out_trade_no"], transaction_id="4" * 50_000, sign="0" * 32).encode(), NOTIFY
    else:
        body, path = ("<xml><return_code>SUCCESS</return_code><appid>x</appid>"
                      + "<req_info>" + "A" * 200_000 + "</req_info></xml>").encode(), REFUND_NOTIFY
    status, answer = await post_xml(api, path, body)
    assert status == 400 and answer["return_code"] == "FAIL"
    [record] = await notifies(kpay_app)
    assert record["verified"] is False
    assert record["body"].encode() == body[:256] and record["body_truncated"] is True
    assert record["body_bytes"] == len(body)
    assert record["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert len(bson.encode(record)) < 2048
    if kind == "bad_signature":
        assert record["verdict"] == "bad_signature"
        assert record["out_trade_no"] == order["out_trade_no"]
        assert record["transaction_id"] == "4" * 64


@pytest.mark.gen_test(timeout=30)
async def test_expired_records_cannot_make_a_resent_notify_book_again(api, kpay_app,
                                                                      fake_wechat):
    token, order = await pending_order(api, fake_wechat)
    body = fake_wechat.payment_notify(order["out_trade_no"], transaction_id="4200ttl")
    status, _ = await post_xml(api, NOTIFY, body)
    assert status == 200
    # What the TTL does, long after the first copy: every record gone.
    await kpay_app.store["wechat_notifies"].delete_many({})
    status, answer = await post_xml(api, NOTIFY, body)
    assert status == 200 and answer["return_code"] == "SUCCESS"
    [record] = await notifies(kpay_app)
    assert record["verdict"] == "duplicate"
    assert await ledger_count(kpay_app, order["id"]) == 1
    _, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 800


@pytest.mark.gen_test(timeout=30)
async def test_notify_records_the_socket_peer_not_a_forged_header(api, kpay_app, fake_wechat):
    _, order = await pending_order(api, fake_wechat)
    status, _ = await api.request("POST", NOTIFY, raw=fake_wechat.payment_notify(
        order["out_trade_no"]), headers={"X-Real-IP": "203.0.113.7",
                                         "X-Forwarded-For": "203.0.113.8"})
    assert status == 200
    [record] = await notifies(kpay_app)
    assert record["remote_ip"] == "127.0.0.1"


@pytest.mark.gen_test(timeout=30)
async def test_notifies_are_not_rate_limited(api, kpay_app, fake_wechat):
    # WeChat may deliver many notifies at once (and resends them); none may be turned
    # away for their number.
    _, order = await pending_order(api, fake_wechat)
    body = fake_wechat.payment_notify(order["out_trade_no"])
    answers = await asyncio.gather(*(post_xml(api, NOTIFY, body) for _ in range(40)))
    assert all(status == 200 and answer["return_code"] == "SUCCESS"
               for status, answer in answers)
    verdicts = sorted(n["verdict"] for n in await notifies(kpay_app))
    assert verdicts == ["duplicate"] * 39 + ["paid"]
