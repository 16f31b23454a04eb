"""Withdrawals through WeChat Pay 商家转账 (API v3) end to end: the real payouts core
(docs/money.md "Payouts") against the fake v3 server's transfer bills
(plugins/wechat_pay/v3_fake_transfers.py): the receiver's confirmation and its signed
callback, the 24-hour expiry, failure, cancellation, a lost create answer (queried,
never a second bill), forged and repeated callbacks, 2,000 yuan without a real name.
The books balance after each."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from wechat_v3_helpers import post_callback

from kpay.core.errors import PaymentProviderError
from kpay.core.money import accounts
from kpay.testing import assert_books_balanced
from plugins.wechat_pay import runtime_of
from plugins.wechat_pay.v3_transfers import transfer_number

TRANSFER_NOTIFY = "/api/v1/pay/wechat-v3/transfer-notify"
DAY = 24 * 3600
EXTERNAL = "external:wechat_pay_v3"


@pytest.fixture
def kpay_overrides(fake_wechat_v3, tmp_path):
    return {"wechat_pay": fake_wechat_v3.settings(tmp_path / "keys"),
            "limits": {"enabled": False}, "auth": {"token_ttl_seconds": 90 * DAY}}


@pytest.fixture
def transfers(fake_wechat_v3, kpay_app):
    """The fake's transfer bills, on the app's (pinned) clock."""
    fake_wechat_v3.transfers.clock = kpay_app.clock.now
    return fake_wechat_v3.transfers


async def consultant(app: Any, api: Any, clock: Any, earned: int = 10_000,
                     user_id: str = "carol") -> tuple[str, int]:
    """A consultant with an openid and earnings past the hold: (token, earnings)."""
    token = await api.login(user_id, "consultant")
    await app.store["users"].update_one({"_id": user_id}, {"$set": {"openid": f"o-{user_id}"}})
    credits = app.money.earnings_credits(earned, user_id)
    await app.money.ledger.post(f"test:earn:{user_id}", [("external:test", -earned), *credits],
                                "课程")
    await clock.advance(app.settings.payouts.hold_days * DAY + 60)
    return token, dict(credits)[accounts.earnings(user_id)]


async def withdraw(api: Any, token: str, amount: int) -> dict[str, Any]:
    status, body = await api.post("/api/v1/payouts", {"amount": amount}, token)
    assert status == 201, body
    return body["payout"]


async def stored(app: Any, payout_id: str) -> dict[str, Any]:
    return await app.money.payouts.collection.find_one({"_id": payout_id})


async def balances(app: Any, user_id: str = "carol") -> tuple[int, int, int]:
    """(earnings, payouts in flight, paid out through WeChat)."""
    ledger = app.money.ledger
    return (await ledger.balance(accounts.earnings(user_id)),
            await ledger.balance("payouts:in_flight"), await ledger.balance(EXTERNAL))


async def payout_keys(app: Any) -> list[str]:
    return sorted([e["_id"] async for e in app.store["ledger"].find(
        {"_id": {"$regex": "^payout:"}}, {"_id": 1})])


async def delivered(delivery: Any) -> None:
    assert delivery is not None
    await delivery.done.wait()
    assert delivery.succeeded, delivery.attempts


@pytest.mark.gen_test(timeout=30)
async def test_a_withdrawal_runs_through_confirmation_and_the_callback(
        api, kpay_app, clock, fake_wechat_v3, transfers):
    token, earned = await consultant(kpay_app, api, clock)
    payout = await withdraw(api, token, 1000)
    number = (await stored(kpay_app, payout["id"]))["out_bill_no"]
    bill = transfers.bills[number]
    assert payout["status"] == "waiting_confirmation"
    assert payout["package_info"] == bill["package_info"]
    assert payout["confirm_params"] == {"mchId": fake_wechat_v3.mchid,
                                        "appId": fake_wechat_v3.appid}
    assert (bill["amount"], bill["openid"], bill["scene_id"]) == (1000, "o-carol", "1005")
    assert bill["notify_url"].endswith(TRANSFER_NOTIFY) and bill["remark"] == "收入提现"
    assert await balances(kpay_app) == (earned - 1000, 1000, 0)

    await delivered(transfers.confirm(number))  # the consultant confirms in WeChat
    done = await stored(kpay_app, payout["id"])
    assert done["status"] == "succeeded" and done["transfer_bill_no"] == bill["transfer_bill_no"]
    assert await balances(kpay_app) == (earned - 1000, 0, 1000)
    assert await payout_keys(kpay_app) == [f"payout:{payout['id']}:paid",
                                           f"payout:{payout['id']}:reserve"]
    await kpay_app.money.payouts.sweep()  # nothing left for the job
    assert fake_wechat_v3.calls["transfer-bills/query"] == 0
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_an_unconfirmed_transfer_expires_after_24_hours(api, kpay_app, clock, transfers):
    token, earned = await consultant(kpay_app, api, clock)
    payout = await withdraw(api, token, 800)
    number = (await stored(kpay_app, payout["id"]))["out_bill_no"]
    await clock.advance(DAY - 60)  # runs the money.payouts job: still waiting
    assert (await stored(kpay_app, payout["id"]))["status"] == "waiting_confirmation"
    await clock.advance(60)  # the job asks, withdraws it at WeChat, returns the money
    done = await stored(kpay_app, payout["id"])
    assert done["status"] == "expired"
    assert transfers.bills[number]["state"] == "CANCELLED"
    assert transfers.confirm(number) is None  # too late to confirm
    assert await balances(kpay_app) == (earned, 0, 0)
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_the_fake_closes_an_unconfirmed_bill_after_24_hours_by_itself(
        api, kpay_app, clock, fake_wechat_v3, transfers):
    token, earned = await consultant(kpay_app, api, clock)
    payout = await withdraw(api, token, 800)
    number = (await stored(kpay_app, payout["id"]))["out_bill_no"]
    await clock.advance(DAY + 1)
    state = await runtime_of(kpay_app).v3.provider.query_transfer(
        await stored(kpay_app, payout["id"]))
    assert (state.status, state.reason) == ("expired", "TRANSFER_EXPIRED")
    await delivered(fake_wechat_v3.deliveries[-1])  # its callback returns the money
    assert (await stored(kpay_app, payout["id"]))["status"] == "expired"
    assert transfers.bills[number]["state"] == "CANCELLED"
    assert await balances(kpay_app) == (earned, 0, 0)
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_a_refused_or_failed_transfer_returns_the_money(api, kpay_app, clock,
                                                              fake_wechat_v3, transfers):
    token, earned = await consultant(kpay_app, api, clock)
    transfers.refuse = "NOT_ENOUGH"  # the merchant's balance is too low: no bill made
    refused = await withdraw(api, token, 500)
    assert refused["status"] == "failed" and "NOT_ENOUGH" in refused["reason"]
    assert transfers.bills == {}
    transfers.refuse = ""
    payout = await withdraw(api, token, 600)
    number = (await stored(kpay_app, payout["id"]))["out_bill_no"]
    await delivered(transfers.fail(number, "PAYEE_ACCOUNT_ABNORMAL"))
    done = await stored(kpay_app, payout["id"])
    assert done["status"] == "failed" and done["reason"] == "PAYEE_ACCOUNT_ABNORMAL"
    assert await balances(kpay_app) == (earned, 0, 0)
    assert await payout_keys(kpay_app) == sorted(
        f"payout:{p['id']}:{step}" for p in (refused, payout) for step in ("reserve", "return"))
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_cancelling_withdraws_the_bill_and_a_confirmed_one_cannot_be(
        api, kpay_app, clock, fake_wechat_v3, transfers):
    token, earned = await consultant(kpay_app, api, clock)
    payout = await withdraw(api, token, 700)
    number = (await stored(kpay_app, payout["id"]))["out_bill_no"]
    status, body = await api.post(f"/api/v1/payouts/{payout['id']}/cancel", {}, token)
    assert status == 200 and body["payout"]["status"] == "cancelled", body
    assert transfers.bills[number]["state"] == "CANCELLED"
    late = transfers.notify(number)  # a CANCELLED callback after it: nothing more
    assert (await post_callback(api, TRANSFER_NOTIFY, late,
                                fake_wechat_v3.signed_headers(late)))[0] == 200
    assert await balances(kpay_app) == (earned, 0, 0)

    second = await withdraw(api, token, 300)
    number = (await stored(kpay_app, second["id"]))["out_bill_no"]
    transfers.bills[number]["notify_url"] = ""  # confirmed; its callback not yet arrived
    transfers.confirm(number)
    status, body = await api.post(f"/api/v1/payouts/{second['id']}/cancel", {}, token)
    assert status == 502 and "INVALID_REQUEST" in body["error"]["message"], body
    await clock.advance(DAY)
    await kpay_app.money.payouts.sweep()  # the next query pays it
    assert (await stored(kpay_app, second["id"]))["status"] == "succeeded"
    assert await balances(kpay_app) == (earned - 300, 0, 300)
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("loss", ["http_500", "unbelieved_signature"])
async def test_a_lost_create_answer_is_queried_and_makes_one_bill(api, kpay_app, clock,
                                                                  fake_wechat_v3, transfers,
                                                                  loss):
    token, earned = await consultant(kpay_app, api, clock)
    if loss == "http_500":
        transfers.lose_answers = 1  # the bill is made; WeChat's answer is a 500
    else:
        fake_wechat_v3.mode = "certificate"  # signed with a key kpay was not given
    payout = await withdraw(api, token, 900)
    fake_wechat_v3.mode = "public_key"
    assert payout["status"] == "sending"
    assert fake_wechat_v3.calls["transfer-bills/create"] == 1 and len(transfers.bills) == 1
    await kpay_app.money.payouts.sweep()  # not in doubt for a minute yet: nothing
    assert fake_wechat_v3.calls["transfer-bills/query"] == 0
    await clock.advance(61)
    await kpay_app.money.payouts.sweep()
    assert fake_wechat_v3.calls["transfer-bills/query"] == 1
    [bill] = transfers.bills.values()  # the package_info comes from the same bill
    done = await stored(kpay_app, payout["id"])
    assert done["status"] == "waiting_confirmation"
    assert done["package_info"] == bill["package_info"] and not done["in_doubt"]
    await delivered(transfers.confirm(bill["out_bill_no"]))
    assert (await stored(kpay_app, payout["id"]))["status"] == "succeeded"
    assert await balances(kpay_app) == (earned - 900, 0, 900)
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_a_create_that_never_arrived_is_sent_again_under_the_same_number(
        api, kpay_app, clock, fake_wechat_v3, transfers):
    token, _ = await consultant(kpay_app, api, clock)
    transfers.refuse = "SYSTEM_BUSY"  # an error kpay cannot tell made no bill: unknown
    payout = await withdraw(api, token, 400)
    transfers.refuse = ""
    assert payout["status"] == "sending" and transfers.bills == {}
    await clock.advance(61)
    await kpay_app.money.payouts.sweep()  # not_found: sent again, same out_bill_no
    done = await stored(kpay_app, payout["id"])
    assert done["status"] == "waiting_confirmation"
    assert list(transfers.bills) == [done["out_bill_no"]]
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_forged_and_repeated_transfer_callbacks_book_once(api, kpay_app, clock,
                                                                fake_wechat_v3, transfers):
    token, earned = await consultant(kpay_app, api, clock)
    payout = await withdraw(api, token, 1000)
    number = (await stored(kpay_app, payout["id"]))["out_bill_no"]
    transfers.bills[number]["state"] = "SUCCESS"  # confirmed; we post its callback
    body = transfers.notify(number, notification_id="n-transfer-1")
    forged = fake_wechat_v3.signed_headers(body, key=rsa.generate_private_key(65537, 2048))
    status, _ = await post_callback(api, TRANSFER_NOTIFY, body, forged)
    assert status >= 400
    more = transfers.notify(number, transfer_amount=100_000)
    status, _ = await post_callback(api, TRANSFER_NOTIFY, more,
                                    fake_wechat_v3.signed_headers(more))
    assert status >= 400
    other = transfers.notify(number, mch_id="1900000000")
    status, _ = await post_callback(api, TRANSFER_NOTIFY, other,
                                    fake_wechat_v3.signed_headers(other))
    assert status >= 400
    assert (await stored(kpay_app, payout["id"]))["status"] == "waiting_confirmation"

    answers = await asyncio.gather(*(
        post_callback(api, TRANSFER_NOTIFY, body, fake_wechat_v3.signed_headers(body))
        for _ in range(10)))
    assert {status for status, _ in answers} == {200}, answers
    again = transfers.notify(number)  # another notification id of the same bill
    assert (await post_callback(api, TRANSFER_NOTIFY, again,
                                fake_wechat_v3.signed_headers(again)))[0] == 200
    assert (await stored(kpay_app, payout["id"]))["status"] == "succeeded"
    assert await balances(kpay_app) == (earned - 1000, 0, 1000)
    assert await payout_keys(kpay_app) == [f"payout:{payout['id']}:paid",
                                           f"payout:{payout['id']}:reserve"]
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_2000_yuan_or_more_is_refused_before_anything_is_sent(api, kpay_app, clock,
                                                                    fake_wechat_v3, transfers):
    # Without a real name (tests/wechat_pay/test_wechat_v3_real_name.py has the rest).
    token, earned = await consultant(kpay_app, api, clock, earned=1_000_000)
    status, refused = await api.post("/api/v1/payouts", {"amount": 200_000}, token)
    assert status == 409 and refused["error"]["code"] == "real_name_required", refused
    assert await kpay_app.money.payouts.collection.count_documents({}) == 0
    assert fake_wechat_v3.calls["transfer-bills/create"] == 0 and transfers.bills == {}
    payout = await withdraw(api, token, 199_999)
    assert payout["status"] == "waiting_confirmation"
    assert await balances(kpay_app) == (earned - 199_999, 199_999, 0)
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_the_dev_confirm_route_confirms_the_bill_at_the_fake(api, kpay_app, clock,
                                                                   fake_wechat_v3, transfers):
    token, earned = await consultant(kpay_app, api, clock)
    payout = await withdraw(api, token, 1000)
    number = (await stored(kpay_app, payout["id"]))["out_bill_no"]
    v3 = runtime_of(kpay_app).v3
    v3.fake = fake_wechat_v3  # as in dev mode without v3 keys (the plugin's own fake)
    try:
        status, body = await api.post(f"/api/v1/dev/payouts/{payout['id']}/confirm",
                                      token=token)
    finally:
        v3.fake = None
    assert status == 200 and body["payout"]["status"] == "succeeded", body
    assert transfers.bills[number]["state"] == "SUCCESS"
    await delivered(fake_wechat_v3.deliveries[-1])  # its callback: a duplicate
    assert await balances(kpay_app) == (earned - 1000, 0, 1000)
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_the_provider_asks_wechat_by_bill_number(kpay_app, fake_wechat_v3, transfers):
    provider = runtime_of(kpay_app).v3.provider
    assert provider.capabilities.payouts
    state = await provider.query_transfer({"out_bill_no": "po404", "amount": 100})
    assert state.status == "not_found"
    with pytest.raises(PaymentProviderError, match="PARAM_ERROR"):  # below 0.1 yuan
        await provider.transfer({"out_bill_no": "po5", "amount": 5}, "o-x")
    assert transfers.bills == {}
    await provider.cancel_transfer({"out_bill_no": "po404", "amount": 100})  # nothing there


def test_bill_numbers_keep_wechats_rules():
    assert transfer_number("po0123456789abcdef012345") == "po0123456789abcdef012345"
    for payout_id in ("po_with-dash", "x" * 40):
        number = transfer_number(payout_id)
        assert number.isalnum() and len(number) <= 32
        assert number == transfer_number(payout_id)
