"""WeChat Pay API v3 payment callbacks: each check refuses its forgery (and books
nothing), 40 identical callbacks racing credit once, a replayed notification id is
answered without booking again."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from wechat_helpers import create_order, ledger_count, notifies
from wechat_v3_helpers import V3_NOTIFY, post_callback

from kpay.testing import assert_books_balanced
from plugins.wechat_pay import v3_signing
from plugins.wechat_pay.v3_provider import NOTIFY_IDS


@pytest.fixture
def kpay_overrides(fake_wechat_v3, tmp_path):
    return {"wechat_pay": fake_wechat_v3.settings(tmp_path / "keys")}


async def pending_order(api, fake, amount=500):
    token = await api.login("rita")
    order = (await create_order(api, token, "native", amount))["order"]
    fake_order = fake.orders[order["out_trade_no"]]
    fake_order.trade_state, fake_order.transaction_id = "SUCCESS", "4200" + "1" * 24
    return order


def tamper_ciphertext(body: bytes) -> bytes:
    envelope = json.loads(body)
    raw = bytearray(envelope["resource"]["ciphertext"].encode())
    raw[10] = ord("A") if raw[10] != ord("A") else ord("B")
    envelope["resource"]["ciphertext"] = raw.decode()
    return json.dumps(envelope).encode()


def forgeries(fake, number):
    """(name, body, headers, reason refused with) for each check."""
    body = fake.payment_notify(number)
    other = fake.payment_notify(number, amount={"total": 1, "currency": "CNY"})
    unknown = {**fake.signed_headers(body), v3_signing.SERIAL: "PUB_KEY_ID_0000000000"}
    tampered = tamper_ciphertext(body)
    # The wall clock on purpose: the provider judges a callback's timestamp on real time,
    # as WeChat does (docs/wechat_pay.md), not on the app's pinned clock. Relative to
    # now, so it holds at any hour and under faketime.
    stale = int(time.time()) - 6 * 60
    return [
        ("bad signature", other, fake.signed_headers(body), "bad_signature"),
        ("other key", body, fake.signed_headers(body, key=rsa.generate_private_key(
            65537, 2048)), "bad_signature"),
        ("stale timestamp", body, fake.signed_headers(body, timestamp=stale),
         "stale_timestamp"),
        ("future timestamp", body, fake.signed_headers(body, timestamp=stale + 12 * 60),
         "stale_timestamp"),
        # "²" passes str.isdigit() but not int() (signed, so only the signature is real).
        ("timestamp of other digits", body, fake.signed_headers(body, timestamp="²"),
         "stale_timestamp"),
        ("tampered ciphertext", tampered, fake.signed_headers(tampered), "bad_resource"),
        ("wrong amount", other, fake.signed_headers(other), "amount_mismatch"),
        ("wrong mchid", (b := fake.payment_notify(number, mchid="1900000000")),
         fake.signed_headers(b), "wrong_mch_id"),
        ("wrong appid", (a := fake.payment_notify(number, appid="wxother000000001")),
         fake.signed_headers(a), "wrong_appid"),
        ("unknown serial", body, unknown, "unknown_serial"),
        ("no signature", body, {"Content-Type": "application/json"}, "missing_signature"),
        ("not json", b"{", fake.signed_headers(b"{"), "bad_json"),
    ]


@pytest.mark.gen_test(timeout=60)
async def test_every_check_refuses_its_forgery(api, kpay_app, fake_wechat_v3):
    order = await pending_order(api, fake_wechat_v3)
    for name, body, headers, reason in forgeries(fake_wechat_v3, order["out_trade_no"]):
        status, answer = await post_callback(api, V3_NOTIFY, body, headers)
        assert status == 400 and answer["code"] == "FAIL", name
        records = await notifies(kpay_app, verdict=reason)
        # Only the wrong amount was believed (signed, decrypted): the core refused it.
        assert records[-1]["verified"] is (reason == "amount_mismatch"), name
        assert (await kpay_app.money.orders.get(order["id"]))["status"] == "pending", name
    assert await ledger_count(kpay_app, order["id"]) == 0
    assert await kpay_app.store[NOTIFY_IDS].count_documents({"answered": True}) == 0
    # The genuine callback still books.
    body = fake_wechat_v3.payment_notify(order["out_trade_no"])
    status, answer = await post_callback(api, V3_NOTIFY, body,
                                         fake_wechat_v3.signed_headers(body))
    assert status == 200 and answer == {"code": "SUCCESS"}
    assert (await kpay_app.money.orders.get(order["id"]))["status"] == "fulfilled"
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_forty_identical_callbacks_credit_once(api, kpay_app, fake_wechat_v3):
    order = await pending_order(api, fake_wechat_v3, 900)
    body = fake_wechat_v3.payment_notify(order["out_trade_no"])
    headers = fake_wechat_v3.signed_headers(body)
    answers = await asyncio.gather(*(post_callback(api, V3_NOTIFY, body, headers)
                                     for _ in range(40)))
    assert answers == [(200, {"code": "SUCCESS"})] * 40
    assert await ledger_count(kpay_app, order["id"]) == 1
    assert await kpay_app.money.ledger.balance("external:wechat_pay_v3") == -900
    verdicts = [r["verdict"] for r in await notifies(kpay_app,
                                                     out_trade_no=order["out_trade_no"])]
    assert sorted(verdicts) == ["duplicate"] * 39 + ["paid"]
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_a_replayed_notification_id_is_answered_without_booking(api, kpay_app,
                                                                      fake_wechat_v3):
    order = await pending_order(api, fake_wechat_v3, 500)
    body = fake_wechat_v3.payment_notify(order["out_trade_no"], notification_id="EV-1")
    status, _ = await post_callback(api, V3_NOTIFY, body, fake_wechat_v3.signed_headers(body))
    assert status == 200
    assert await kpay_app.store[NOTIFY_IDS].count_documents(
        {"_id": "EV-1", "answered": True}) == 1
    # The same id again, even with a resource that no longer decrypts: it is answered
    # from what was booked, without decrypting or booking.
    replay = tamper_ciphertext(fake_wechat_v3.payment_notify(order["out_trade_no"],
                                                             notification_id="EV-1"))
    for _ in range(3):
        status, answer = await post_callback(api, V3_NOTIFY, replay,
                                             fake_wechat_v3.signed_headers(replay))
        assert status == 200 and answer == {"code": "SUCCESS"}
    assert await ledger_count(kpay_app, order["id"]) == 1
    verdicts = [r["verdict"] for r in await notifies(kpay_app,
                                                     out_trade_no=order["out_trade_no"])]
    assert verdicts == ["paid", "duplicate", "duplicate", "duplicate"]
    # A refused callback does not count as answered: its id may still book later.
    assert await kpay_app.store[NOTIFY_IDS].count_documents({}) == 1
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_a_callback_for_an_order_that_is_not_v3s_is_refused(api, kpay_app,
                                                                  fake_wechat_v3):
    order = await pending_order(api, fake_wechat_v3, 500)
    body = fake_wechat_v3.payment_notify(order["out_trade_no"], out_trade_no="o-nope")
    status, _ = await post_callback(api, V3_NOTIFY, body, fake_wechat_v3.signed_headers(body))
    assert status == 400
    assert [r["verdict"] for r in await notifies(kpay_app, verdict="unknown_order")]
    await assert_books_balanced(kpay_app)
