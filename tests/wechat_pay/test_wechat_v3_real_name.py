"""The receiver's real name for transfers of 2,000 yuan and more (docs/wechat_pay.md
"商家转账", docs/money.md "Payouts"): set by the consultant (``PUT
/api/v1/payouts/real-name``), checked by the payouts core before anything is reserved
(``PaymentProvider.payout_requirements``), sent to the fake v3 server as ``user_name``
encrypted with WeChat's public key (or the 平台证书) named by ``Wechatpay-Serial``; the
fake decrypts it. The name is in no log, no audit record and no one else's view; the
books balance after each."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from kpay.testing import assert_books_balanced
from plugins.wechat_pay import runtime_of, v3_signing
from plugins.wechat_pay.v3_client import V3Refused
from plugins.wechat_pay.v3_transfers import TRANSFER_BILLS

DAY = 24 * 3600
NAME = "欧阳·娜娜"
BIG = 200_000  # 2,000 yuan: from here WeChat needs the name


@pytest.fixture(params=["public_key", "certificate"])
def trust(request):
    return request.param


@pytest.fixture
def kpay_overrides(fake_wechat_v3, tmp_path, trust):
    fake_wechat_v3.mode = trust  # WeChat signs with the key kpay was given
    return {"wechat_pay": fake_wechat_v3.settings(tmp_path / "keys", trust=trust),
            "limits": {"enabled": False}, "auth": {"token_ttl_seconds": 90 * DAY}}


@pytest.fixture
def transfers(fake_wechat_v3, kpay_app):
    fake_wechat_v3.transfers.clock = kpay_app.clock.now
    return fake_wechat_v3.transfers


async def consultant(app: Any, api: Any, clock: Any, earned: int = 1_000_000,
                     user_id: str = "carol") -> str:
    """A consultant with an openid and ``earned`` fen withdrawable (no platform fee
    asked of the test: whatever the credits give is what the books say)."""
    token = await api.login(user_id, "consultant")
    await app.store["users"].update_one({"_id": user_id}, {"$set": {"openid": f"o-{user_id}"}})
    credits = app.money.earnings_credits(earned, user_id)
    await app.money.ledger.post(f"test:earn:{user_id}", [("external:test", -earned), *credits],
                                "课程")
    await clock.advance(app.settings.payouts.hold_days * DAY + 60)
    return token


async def earnings(app: Any, user_id: str = "carol") -> tuple[int, int]:
    """(earnings, payouts in flight)."""
    ledger = app.money.ledger
    return (await ledger.balance(f"earnings:{user_id}"),
            await ledger.balance("payouts:in_flight"))


@pytest.mark.gen_test(timeout=30)
async def test_a_2000_yuan_withdrawal_carries_the_encrypted_name(api, kpay_app, clock, trust,
                                                                 fake_wechat_v3, transfers):
    token = await consultant(kpay_app, api, clock)
    before, _ = await earnings(kpay_app)
    status, body = await api.put("/api/v1/payouts/real-name", {"real_name": f"  {NAME} "},
                                 token)
    assert status == 200 and body == {"real_name": "欧***娜"}, body
    assert await api.get("/api/v1/payouts/real-name", token) == (200, {"real_name": "欧***娜"})
    status, body = await api.post("/api/v1/payouts", {"amount": BIG}, token)
    assert status == 201 and body["payout"]["status"] == "waiting_confirmation", body
    stored = await kpay_app.money.payouts.collection.find_one({"_id": body["payout"]["id"]})
    bill = transfers.bills[stored["out_bill_no"]]
    assert bill["user_name"] == NAME and bill["amount"] == BIG  # decrypted by the fake
    assert NAME not in str(stored)  # the payout record keeps no name
    delivery = transfers.confirm(stored["out_bill_no"])
    await delivery.done.wait()
    assert delivery.succeeded, delivery.attempts
    done = await kpay_app.money.payouts.collection.find_one({"_id": stored["_id"]})
    assert done["status"] == "succeeded"
    assert await earnings(kpay_app) == (before - BIG, 0)
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_without_a_name_it_is_refused_before_anything_is_reserved(
        api, kpay_app, clock, fake_wechat_v3, transfers):
    token = await consultant(kpay_app, api, clock)
    before = await earnings(kpay_app)
    for amount in (BIG, 1_000_000):
        status, body = await api.post("/api/v1/payouts", {"amount": amount}, token)
        assert status == 409 and body["error"]["code"] == "real_name_required", body
    assert await kpay_app.money.payouts.collection.count_documents({}) == 0
    assert await earnings(kpay_app) == before
    assert fake_wechat_v3.calls["transfer-bills/create"] == 0
    # Below 2,000 yuan no name is needed.
    status, body = await api.post("/api/v1/payouts", {"amount": BIG - 1}, token)
    assert status == 201 and body["payout"]["status"] == "waiting_confirmation", body
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_replays_and_racing_requests_make_one_bill_each(api, kpay_app, clock,
                                                              fake_wechat_v3, transfers):
    token = await consultant(kpay_app, api, clock, earned=1_000_000)
    await kpay_app.users.set_real_name("carol", NAME)
    headers = {"Idempotency-Key": "big-1"}
    answers = await asyncio.gather(*(api.request("POST", "/api/v1/payouts", {"amount": BIG},
                                                 token, headers=headers) for _ in range(4)))
    assert {status for status, _ in answers} <= {201}, answers
    assert len({body["payout"]["id"] for _, body in answers}) == 1
    assert fake_wechat_v3.calls["transfer-bills/create"] == 1 and len(transfers.bills) == 1
    _, in_flight = await earnings(kpay_app)
    assert in_flight == BIG
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_a_name_removed_meanwhile_fails_the_payout_before_sending(
        api, kpay_app, clock, fake_wechat_v3, transfers, monkeypatch):
    # The core checked; the provider checks again when it sends (an approval later).
    token = await consultant(kpay_app, api, clock)
    before = await earnings(kpay_app)
    await kpay_app.users.set_real_name("carol", NAME)
    held = kpay_app.settings.payouts.model_copy(update={"approval_above": 100_000})
    monkeypatch.setattr(type(kpay_app.money.payouts), "settings", property(lambda _: held))
    status, body = await api.post("/api/v1/payouts", {"amount": BIG}, token)
    assert status == 201 and body["payout"]["status"] == "awaiting_approval", body
    await kpay_app.store["users"].update_one({"_id": "carol"}, {"$unset": {"real_name": 1}})
    done = await kpay_app.money.payouts.approve(body["payout"]["id"], "admin", "ok", "test")
    assert done["status"] == "failed" and "real name" in done["reason"]
    assert fake_wechat_v3.calls["transfer-bills/create"] == 0
    assert await earnings(kpay_app) == before
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("trust", ["public_key"])  # the name checks need no WeChat key
@pytest.mark.parametrize("bad", ["", " ", "张", "a" * 31, "张三1", "<b>张三</b>", "张 三",
                                 "Zhang_San", 42, None, ["张三"]])
async def test_bad_names_are_refused(api, kpay_app, bad):
    token = await api.login("carol", "consultant")
    status, body = await api.put("/api/v1/payouts/real-name", {"real_name": bad}, token)
    assert status == 400 and body["error"]["code"] in ("invalid_real_name", "invalid_field"), body
    assert await kpay_app.users.real_name("carol") is None


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("trust", ["public_key"])
async def test_only_a_consultant_sets_their_own_and_no_one_else_sees_it(api, kpay_app):
    student = await api.login("sam", "student")
    status, body = await api.put("/api/v1/payouts/real-name", {"real_name": NAME}, student)
    assert status == 403, body
    carol = await api.login("carol", "consultant")
    dave = await api.login("dave", "consultant")
    admin = await api.login("root", "admin")
    assert (await api.put("/api/v1/payouts/real-name", {"real_name": "Anna·Lee"}, carol))[0] \
        == 200
    assert await kpay_app.users.real_name("carol") == "Anna·Lee"
    assert await api.get("/api/v1/payouts/real-name", dave) == (200, {"real_name": None})
    seen = [await api.get("/api/v1/me", carol), await api.get("/api/v1/me", dave),
            await api.get("/api/v1/admin/audit", admin)]
    assert await kpay_app.users.profile("carol") == {"id": "carol", "name": "carol",
                                                     "role": "consultant", "blocked": False,
                                                     "avatar_url": None}
    assert "Anna" not in str(seen), seen
    records = [r async for r in kpay_app.store["audit_log"].find({"action": "payout.real_name"})]
    assert len(records) == 1 and records[0]["actor"] == "carol"
    assert "Anna" not in str(records)


@pytest.mark.gen_test(timeout=30)
async def test_the_name_never_reaches_the_logs(api, kpay_app, clock, caplog, fake_wechat_v3,
                                               transfers, trust):
    caplog.set_level(logging.DEBUG)
    token = await consultant(kpay_app, api, clock)
    await api.put("/api/v1/payouts/real-name", {"real_name": NAME}, token)
    await api.put("/api/v1/payouts/real-name", {"real_name": NAME + "1"}, token)  # refused
    status, body = await api.post("/api/v1/payouts", {"amount": BIG}, token)
    assert status == 201, body
    fake_wechat_v3.transfers.refuse = "SYSTEM_ERROR"  # an error path logs too
    await api.post("/api/v1/payouts", {"amount": BIG + 1}, token)
    text = "\n".join(r.getMessage() + str(r.args) for r in caplog.records)
    assert caplog.records and NAME not in text and "欧阳" not in text


@pytest.mark.gen_test(timeout=30)
async def test_the_fake_refuses_a_missing_or_undecryptable_name(kpay_app, fake_wechat_v3,
                                                                transfers, trust):
    v3 = runtime_of(kpay_app).v3
    serial, key = v3.merchant.platform.encryption_key()
    base = {"appid": fake_wechat_v3.appid, "out_bill_no": "bigbill1",
            "transfer_scene_id": "1005", "openid": "o-carol", "transfer_amount": BIG,
            "transfer_remark": "提现", "transfer_scene_report_infos": [
                {"info_type": "岗位类型", "info_content": "顾问"}]}
    wrong = {**base, "user_name": v3_signing.encrypt_sensitive(
        fake_wechat_v3.merchant_key.public_key(), NAME)}  # not WeChat's key
    for body, headers in ((base, {}), ({**base, "user_name": "bm90IGEgbmFtZQ=="},
                                       {v3_signing.SERIAL: serial}),
                          (wrong, {v3_signing.SERIAL: serial}),
                          ({**base, "user_name": v3_signing.encrypt_sensitive(key, NAME)},
                           {v3_signing.SERIAL: "PUB_KEY_ID_nobody"})):
        with pytest.raises(V3Refused) as refused:
            await v3.client.request("POST", TRANSFER_BILLS, body, headers)
        assert refused.value.code == "PARAM_ERROR"
    assert transfers.bills == {}
    good = {**base, "user_name": v3_signing.encrypt_sensitive(key, NAME)}
    answer = await v3.client.request("POST", TRANSFER_BILLS, good, {v3_signing.SERIAL: serial})
    assert answer["state"] == "WAIT_USER_CONFIRM" and transfers.bills["bigbill1"]["user_name"] \
        == NAME
