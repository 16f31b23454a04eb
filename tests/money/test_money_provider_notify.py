"""A second, non-WeChat payment provider: wallet top-ups on its own channel, its notifies
through the core's /api/v1/pay/<url_name>/... routes in its own format, replays and
concurrent copies booked once, forgeries refused, capabilities enforced."""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any

import pytest
import tornado.httpclient
from money_fakes import ORDERS, MoneyTestPlugin, paid_order

from kpay.core.errors import PaymentProviderError
from kpay.core.money.providers import ProviderCapabilities
from kpay.testing import FakeProvider, FakeProviderPlugin

NOTIFY = "/api/v1/pay/altpay/notify"
REFUND_NOTIFY = "/api/v1/pay/altpay/refund-notify"


@pytest.fixture
def altpay() -> FakeProvider:
    # Not WeChat: its own channel name, JSON notifies signed in a header.
    return FakeProvider("altpay", ("alipay_qr",), url_name="altpay", secret="alt-secret")


@pytest.fixture
def kpay_extra_plugins(money_plugin: MoneyTestPlugin, altpay: FakeProvider
                       ) -> list[tuple[str, Any]]:
    return [("money_test", money_plugin), ("altpay", FakeProviderPlugin(altpay))]


async def post_notify(api, path: str, signed: tuple[bytes, dict[str, str]],
                      client: Any = None) -> tuple[int, Any]:
    body, headers = signed
    client = client or api.http
    response = await client.fetch(api.base + path, method="POST", body=body,
                                  headers=headers, raise_error=False)
    assert response.headers["Content-Type"].startswith("application/json")
    return response.code, json.loads(response.body)


async def altpay_topup(api, token: str, amount: int = 3000) -> dict[str, Any]:
    status, body = await api.post(ORDERS, {"item": {"kind": "wallet_topup", "amount": amount},
                                           "channel": "alipay_qr"}, token)
    assert status == 201, body
    assert body["order"]["status"] == "pending" and body["pay"]["code_url"]
    return body["order"]


async def pay_entries(app, order_id: str) -> int:
    return await app.store["ledger"].count_documents({"_id": f"order:{order_id}:pay"})


@pytest.mark.gen_test
async def test_a_second_provider_takes_a_topup_through_its_own_notify_route(
        api, kpay_app, altpay):
    token = await api.login("amy")
    order = await altpay_topup(api, token)
    status, answer = await post_notify(api, NOTIFY, altpay.payment_notify(order))
    assert status == 200 and answer == {"code": "SUCCESS"}
    _, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 3000
    stored = await kpay_app.money.orders.get(order["id"])
    assert stored["status"] == "fulfilled" and stored["paid_via"] == "notify"
    assert stored["paid_from"] == "external:altpay"
    assert await kpay_app.money.ledger.balance("external:altpay") == -3000
    [verdict] = altpay.verdicts
    assert (verdict.outcome, verdict.reason, verdict.verified) == ("accepted", "paid", True)
    assert verdict.facts["order_id"] == order["id"]


@pytest.mark.gen_test(timeout=60)
async def test_replays_and_concurrent_copies_book_once(api, kpay_app, altpay, money_plugin):
    token = await api.login("amy")
    order = await altpay_topup(api, token, 990)
    notify = altpay.payment_notify(order)
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=20)
    try:
        results = await asyncio.gather(*(post_notify(api, NOTIFY, notify, client)
                                         for _ in range(20)))
    finally:
        client.close()
    assert all(r == (200, {"code": "SUCCESS"}) for r in results)
    # A replay much later (the sender resends) books nothing either.
    assert await post_notify(api, NOTIFY, notify) == (200, {"code": "SUCCESS"})
    assert await pay_entries(kpay_app, order["id"]) == 1
    _, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 990
    outcomes = sorted(v.reason for v in altpay.verdicts)
    assert outcomes == ["duplicate"] * 20 + ["paid"]
    assert money_plugin.paid == [order["id"]]


@pytest.mark.gen_test
async def test_forged_or_foreign_notifies_change_nothing(api, kpay_app, altpay, money_plugin):
    token = await api.login("amy")
    order = await altpay_topup(api, token)
    status, other = await api.post(ORDERS, {"item": {"kind": "wallet_topup", "amount": 500},
                                            "channel": "native"}, token)
    assert status == 201
    forged_body, headers = altpay.payment_notify(order)
    cases = [
        ((forged_body, {**headers, "X-Fake-Signature": "0" * 64}), "bad_signature"),
        (FakeProvider(secret="other-key").payment_notify(order), "bad_signature"),
        ((b"not json", {"X-Fake-Signature": altpay.sign(b"not json")}), "bad_body"),
        (altpay.payment_notify(order, amount=1), "amount_mismatch"),
        (altpay.payment_notify(order, out_trade_no="o" + "0" * 24), "unknown_order"),
        # Another provider's order: a provider never pays what it did not take.
        (altpay.payment_notify(other["order"]), "unknown_order"),
    ]
    for signed, reason in cases:
        status, answer = await post_notify(api, NOTIFY, signed)
        assert status == 400 and answer == {"code": "FAIL", "message": reason}, reason
        assert altpay.verdicts[-1].outcome == "refused"
    for order_id in (order["id"], other["order"]["id"]):
        assert (await kpay_app.money.orders.get(order_id))["status"] == "pending"
        assert await pay_entries(kpay_app, order_id) == 0
    _, wallet = await api.get("/api/v1/wallet", token)
    assert wallet["balance"] == 0 and money_plugin.paid == []
    status, _ = await api.post("/api/v1/pay/nobody/notify", {})
    assert status == 404


@pytest.mark.gen_test
async def test_paid_after_close_books_nothing_and_needs_attention(api, kpay_app, altpay):
    token = await api.login("amy")
    order = await altpay_topup(api, token)
    await kpay_app.money.orders.close(order["id"], "expired")
    status, answer = await post_notify(api, NOTIFY, altpay.payment_notify(order))
    assert status == 200 and answer == {"code": "SUCCESS"}  # resending cannot help
    assert (await kpay_app.money.orders.get(order["id"]))["status"] == "closed"
    assert await pay_entries(kpay_app, order["id"]) == 0
    assert altpay.verdicts[-1].reason == "paid_after_close"
    [entry] = await kpay_app.attention.list()
    assert entry["subject"] == f"order:{order['id']}" and entry["source"] == "money.notify"


@pytest.mark.gen_test
async def test_refund_notify_records_the_result_and_flags_a_failure(api, kpay_app, altpay):
    token = await api.login("amy")
    orders = kpay_app.money.orders
    order = await paid_order(api, token, "g250", "alipay_qr")
    first = await orders.refund(order["id"], 100, "part", to="original", key="alt-r1")
    assert first["status"] == "succeeded" and altpay.refunds == [first["out_refund_no"]]
    status, answer = await post_notify(api, REFUND_NOTIFY, altpay.refund_notify(first))
    assert status == 200 and answer == {"code": "SUCCESS"}
    stored = await kpay_app.store["refunds"].find_one({"_id": first["_id"]})
    assert stored["provider_status"] == "SUCCEEDED"
    assert await kpay_app.attention.list() == []
    # Forged ones change nothing.
    for signed, reason in [(altpay.refund_notify(first, amount=150), "amount_mismatch"),
                           (altpay.refund_notify({**first, "out_refund_no": "nope"}),
                            "unknown_refund"),
                           (FakeProvider(secret="x").refund_notify(first), "bad_signature")]:
        status, answer = await post_notify(api, REFUND_NOTIFY, signed)
        assert status == 400 and answer["message"] == reason
    second = await orders.refund(order["id"], 150, "rest", to="original", key="alt-r2")
    status, _ = await post_notify(api, REFUND_NOTIFY,
                                  altpay.refund_notify(second, status="failed"))
    assert status == 200
    stored = await kpay_app.store["refunds"].find_one({"_id": second["_id"]})
    assert stored["provider_status"] == "FAILED" and stored["status"] == "succeeded"
    [entry] = await kpay_app.attention.list()
    assert entry["subject"] == f"refund:{second['_id']}"


@pytest.mark.gen_test
async def test_a_refund_paid_out_after_kpay_marked_it_failed_needs_a_person(api, kpay_app,
                                                                            altpay):
    """The provider refused (kpay made the amount refundable again), then its notify says
    the refund went through: booked nowhere, but listed, so nobody refunds it twice."""
    token = await api.login("amy")
    order = await paid_order(api, token, "g250", "alipay_qr")
    altpay.refuse_refunds = True
    with pytest.raises(PaymentProviderError):
        await kpay_app.money.orders.refund(order["id"], 100, "part", to="original", key="r1")
    failed = await kpay_app.store["refunds"].find_one({"_id": "r1"})
    assert failed["status"] == "failed"
    status, _ = await post_notify(api, REFUND_NOTIFY, altpay.refund_notify(
        {**failed, "id": failed["_id"]}))
    assert status == 200
    [entry] = await kpay_app.attention.list()
    assert entry["subject"] == "refund:r1" and "refund it twice" in entry["error"]
    assert (await kpay_app.money.orders.get(order["id"]))["refundable"] == 250


@pytest.mark.gen_test
async def test_default_refund_numbers_are_safe_and_stable(api, kpay_app, altpay):
    token = await api.login("amy")
    order = await paid_order(api, token, "g250", "alipay_qr")
    refund = await kpay_app.money.orders.refund(order["id"], 10, "odd", to="original",
                                                key="a key|with*odd@chars" * 3)
    number = refund["out_refund_no"]
    assert number.isalnum() and len(number) <= 32 and altpay.refunds == [number]
    assert altpay.refund_number("alt-r1") == "alt-r1"


@pytest.mark.gen_test
async def test_settle_pending_waits_for_each_providers_own_delay(api, kpay_app, altpay,
                                                                 money_plugin):
    token = await api.login("amy")
    order = await altpay_topup(api, token)
    status, body = await api.post(ORDERS, {"item": {"kind": "wallet_topup", "amount": 500},
                                           "channel": "native"}, token)
    assert status == 201
    await kpay_app.advance_clock(61)  # altpay waits 1 minute (the default), fakepay 5
    assert altpay.queried == [order["id"]] and money_plugin.provider.queried == []
    await kpay_app.advance_clock(4 * 60)
    assert money_plugin.provider.queried == [body["order"]["id"]]


def test_providers_declare_capabilities_and_the_plugin_list_shows_them(io_loop, kpay_app):
    described = {p["name"]: p for p in kpay_app.pm.describe()}
    assert described["altpay"]["payment_capabilities"] == {"altpay": {
        "refunds": True, "partial_refunds": True, "payouts": False,
        "channels": ["alipay_qr"], "url_name": "altpay"}}


@pytest.mark.gen_test
async def test_topups_are_payable_on_every_providers_channel_but_not_the_wallet(api):
    token = await api.login("amy")
    for channel in ("alipay_qr", "native", "jsapi", "mweb"):
        status, body = await api.post(ORDERS, {
            "item": {"kind": "wallet_topup", "amount": 500}, "channel": channel}, token)
        assert status == 201, (channel, body)
    status, body = await api.post(ORDERS, {
        "item": {"kind": "wallet_topup", "amount": 500}, "channel": "wallet"}, token)
    assert status == 400 and body["error"]["code"] == "channel_not_allowed"


def test_a_provider_without_url_name_is_deprecated(kpay_settings, io_loop):
    app = kpay_settings.new_app()
    legacy = FakeProvider("legacy", ("legacy_qr",), url_name="")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app.money.register([], [legacy])
    assert any(issubclass(w.category, DeprecationWarning) and "legacy" in str(w.message)
               for w in caught)
    assert app.money.notify_providers() == []


def test_capabilities_are_frozen():
    can = ProviderCapabilities(refunds=False)
    with pytest.raises(AttributeError):
        can.refunds = True  # type: ignore[misc]
    assert can.describe(("x",))["channels"] == ["x"]


@pytest.mark.gen_test
async def test_our_own_failure_asks_the_sender_to_resend(api, kpay_app, altpay):
    token = await api.login("amy")
    order = await altpay_topup(api, token)
    notify = altpay.payment_notify(order)
    genuine = altpay.handle_notify

    async def broken(body, headers):
        raise RuntimeError("database went away")

    altpay.handle_notify = broken  # type: ignore[method-assign]
    status, answer = await post_notify(api, NOTIFY, notify)
    assert status == 500 and answer == {"code": "FAIL", "message": "internal error"}
    assert (await kpay_app.money.orders.get(order["id"]))["status"] == "pending"
    altpay.handle_notify = genuine  # type: ignore[method-assign]
    assert await post_notify(api, NOTIFY, notify) == (200, {"code": "SUCCESS"})
    assert [v.outcome for v in altpay.verdicts] == ["error", "accepted"]
    assert await pay_entries(kpay_app, order["id"]) == 1
