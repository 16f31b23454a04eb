"""Operators' refunds: an admin refunds a paid order (partly, fully, replayed, raced, bad
input), sees it with its refunds, and refunds an order paid after it was closed from its
needs-attention entry in one click; every one in the audit log, the books whole."""

from __future__ import annotations

import asyncio
import json

import pytest

from kpay.core.money.operator import LatePayments
from kpay.testing import run_kpay

ORDERS = "/api/v1/orders"
ADMIN_ORDERS = "/api/v1/admin/orders"
NOTIFY = "/api/v1/pay/fakepay/notify"


async def paid_native_order(api, token, sku="g250"):
    status, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": sku},
                                           "channel": "native"}, token)
    assert status == 201, body
    status, body = await api.post(f"/api/v1/dev/orders/{body['order']['id']}/pay", token=token)
    assert status == 200 and body["order"]["status"] == "fulfilled", body
    return body["order"]


async def refund(api, admin, order_id, body, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    return await api.request("POST", f"{ADMIN_ORDERS}/{order_id}/refund", body, admin,
                              headers=headers)


async def balance(app, account):
    return await app.money.ledger.balance(account)


@pytest.mark.gen_test
async def test_an_admin_refunds_part_then_the_rest_and_both_are_audited(
        api, kpay_app, money_plugin):
    amy, root = await api.login("amy"), await api.login("root", "admin")
    order = await paid_native_order(api, amy)
    status, body = await refund(api, root, order["id"],
                                {"amount": 100, "reason": "  课程内容与介绍不符  "})
    assert status == 200, body
    first = body["refund"]
    assert (first["amount"], first["to"], first["status"], first["purpose"]) == (
        100, "native", "succeeded", "adjust")
    assert first["reason"] == "课程内容与介绍不符"
    status, body = await refund(api, root, order["id"], {"amount": 150, "reason": "全部退回",
                                                          "purpose": "revoke"})
    assert status == 200 and body["refund"]["status"] == "succeeded", body
    assert len(money_plugin.provider.refunds) == 2
    status, body = await api.get(f"{ADMIN_ORDERS}/{order['id']}", root)
    assert status == 200, body
    assert body["order"]["status"] == "refunded" and body["order"]["refundable"] == 0
    assert body["order"]["user_id"] == "amy"
    assert [r["amount"] for r in body["refunds"]] == [100, 150]
    assert await balance(kpay_app, "external:fakepay") == 0
    assert await balance(kpay_app, "earnings:seller1") == 0
    records = await kpay_app.audit.list(action="order.refund")
    assert [r["details"]["amount"] for r in records] == [150, 100]
    assert records[1]["actor"] == "root" and records[1]["target"] == f"order:{order['id']}"
    assert records[1]["reason"] == "课程内容与介绍不符"
    assert records[1]["details"]["result"] == "succeeded"
    # Nothing is left: refused, and the refusal is audited too.
    status, body = await refund(api, root, order["id"], {"amount": 1, "reason": "再退"})
    assert status == 409 and body["error"]["code"] == "not_refundable"
    [refused] = await kpay_app.audit.list(action="order.refund", limit=1)
    assert refused["details"]["result"] == "not_refundable"


@pytest.mark.gen_test
async def test_the_idempotency_key_is_the_refund_key(api, kpay_app, money_plugin):
    amy, root = await api.login("amy"), await api.login("root", "admin")
    order = await paid_native_order(api, amy)
    answers = [await refund(api, root, order["id"], {"amount": 50, "reason": "重复点击"},
                            key="click-1") for _ in range(3)]
    assert {(s, b["refund"]["id"]) for s, b in answers} == {(200, "click-1")}
    assert len(money_plugin.provider.refunds) == 1
    assert (await kpay_app.money.orders.get(order["id"]))["refundable"] == 200
    status, body = await refund(api, root, order["id"], {"amount": 60, "reason": "重复点击"},
                                key="click-1")
    assert status == 409 and body["error"]["code"] == "idempotency_conflict"
    # Without a key, one refund per order and reason: a double submit refunds once.
    for _ in range(2):
        status, body = await refund(api, root, order["id"], {"amount": 70, "reason": "同一原因"})
        assert status == 200
    assert (await kpay_app.money.orders.get(order["id"]))["refundable"] == 130


@pytest.mark.gen_test
async def test_racing_admins_never_refund_more_than_was_paid(api, kpay_app, money_plugin):
    amy, root = await api.login("amy"), await api.login("root", "admin")
    order = await paid_native_order(api, amy)
    answers = await asyncio.gather(*[
        refund(api, root, order["id"], {"amount": 100, "reason": f"第{i}次"}) for i in range(6)])
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 200, 409, 409, 409, 409], answers
    assert {b["error"]["code"] for s, b in answers if s == 409} == {"not_refundable"}
    stored = await kpay_app.money.orders.get(order["id"])
    assert (stored["refunded"], stored["refundable"]) == (200, 50)
    assert await balance(kpay_app, "external:fakepay") == -50


@pytest.mark.gen_test
async def test_wallet_refunds_credit_the_buyer(api, kpay_app):
    amy, root = await api.login("amy"), await api.login("root", "admin")
    order = await paid_native_order(api, amy, "g100")
    status, body = await refund(api, root, order["id"], {"amount": 100, "reason": "退到钱包",
                                                          "to": "wallet"})
    assert status == 200 and body["refund"]["to"] == "wallet", body
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 100
    # The buyer is told, in Chinese, with a link to the wallet.
    _, page = await api.get("/api/v1/notifications", amy)
    told = page["notifications"][0]
    assert (told["kind"], told["title"], told["link"]) == (
        "order_refunded", "退款 ¥1.00 已退回钱包", "/static/wallet.html")
    assert "退款" in told["body"]


@pytest.mark.gen_test
async def test_bad_refund_requests_are_refused_with_codes(api, kpay_app):
    amy, root = await api.login("amy"), await api.login("root", "admin")
    order = await paid_native_order(api, amy)
    status, body = await refund(api, amy, order["id"], {"amount": 1, "reason": "我自己退"})
    assert status == 403
    good = {"amount": 10, "reason": "ok"}
    for bad in ({**good, "amount": "10"}, {**good, "amount": 1.5}, {**good, "amount": True},
                {**good, "amount": 0}, {**good, "amount": -5}, {"amount": 10},
                {**good, "reason": "   "}, {**good, "reason": "退" * 201},
                {**good, "to": "bank"}, {**good, "purpose": "gift"}, {**good, "extra": 1}):
        status, body = await refund(api, root, order["id"], bad)
        assert status == 400 and body["error"]["code"] == "invalid_field", (bad, body)
    status, body = await refund(api, root, order["id"], good, key="has space")
    assert status == 400 and body["error"]["field"] == "Idempotency-Key"
    status, body = await refund(api, root, "nope", good)
    assert status == 404 and body["error"]["code"] == "order_not_found"
    status, body = await api.get(f"{ADMIN_ORDERS}/nope", root)
    assert status == 404 and body["error"]["code"] == "order_not_found"
    status, body = await refund(api, root, order["id"], {**good, "amount": 251})
    assert status == 409 and body["error"]["refundable"] == 250
    status, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": "g100"},
                                           "channel": "native"}, amy)
    status, body = await refund(api, root, body["order"]["id"], good)  # still pending
    assert status == 409 and body["error"]["code"] == "not_refundable"
    assert (await kpay_app.money.orders.get(order["id"]))["refundable"] == 250


# -- paid after close ------------------------------------------------------------------


async def paid_after_close(api, kpay_app, money_plugin, token):
    """An order closed by kpay, then paid at the provider: on the attention list."""
    status, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": "g250"},
                                           "channel": "native"}, token)
    assert status == 201, body
    order = body["order"]
    await kpay_app.money.orders.close(order["id"], "expired")
    payload, headers = money_plugin.provider.payment_notify(order)
    response = await api.http.fetch(api.base + NOTIFY, method="POST", body=payload,
                                    headers=headers, raise_error=False)
    assert response.code == 200 and json.loads(response.body) == {"code": "SUCCESS"}
    [entry] = await kpay_app.attention.list()
    assert entry["details"]["order_id"] == order["id"] and entry["details"]["amount"] == 250
    return order, entry


def attention_refund(api, token, entry_id, body=None):
    return api.post(f"/api/v1/admin/attention/{entry_id}/refund", body or {}, token)


@pytest.mark.gen_test
async def test_one_click_refunds_a_payment_after_close_and_resolves_it(
        api, kpay_app, money_plugin):
    amy, root = await api.login("amy"), await api.login("root", "admin")
    order, entry = await paid_after_close(api, kpay_app, money_plugin, amy)
    # The order's payment was never booked: the ordinary refund refuses it.
    status, body = await refund(api, root, order["id"], {"amount": 250, "reason": "退"})
    assert status == 409 and body["error"]["code"] == "not_refundable"
    status, body = await attention_refund(api, root, entry["id"], {"reason": "关闭后支付"})
    assert status == 200, body
    assert body["refund"]["status"] == "succeeded" and body["refund"]["late"] is True
    assert body["refund"]["amount"] == 250 and body["refund"]["to"] == "native"
    assert body["entry"]["status"] == "resolved" and body["entry"]["resolved_by"] == "root"
    assert money_plugin.provider.refunds == [body["refund"]["out_refund_no"]]
    # The money came in and went back out: both are in the ledger, nothing else moved.
    ledger = kpay_app.store["ledger"]
    assert await ledger.count_documents({"_id": f"late:{order['id']}:pay"}) == 1
    assert await ledger.count_documents({"_id": f"refund:{body['refund']['id']}"}) == 1
    assert await balance(kpay_app, "external:fakepay") == 0
    assert await balance(kpay_app, "late:fakepay") == 0
    assert await balance(kpay_app, "earnings:seller1") == 0
    stored = await kpay_app.money.orders.get(order["id"])
    assert stored["status"] == "closed" and stored["refunded"] == 250
    [record] = await kpay_app.audit.list(action="order.refund_late")
    assert record["details"]["result"] == "succeeded" and record["details"]["amount"] == 250
    assert record["reason"] == "关闭后支付"
    # Clicking again (the page was stale) refunds nothing more.
    status, again = await attention_refund(api, root, entry["id"])
    assert status == 200 and again["refund"]["id"] == body["refund"]["id"]
    assert len(money_plugin.provider.refunds) == 1
    status, body = await api.get(f"{ADMIN_ORDERS}/{order['id']}", root)
    assert [r["late"] for r in body["refunds"]] == [True]
    assert body["order"]["late_refund_id"] == again["refund"]["id"]


@pytest.mark.gen_test
async def test_two_admins_clicking_at_once_refund_once(api, kpay_app, money_plugin):
    amy = await api.login("amy")
    admins = [await api.login(f"root{i}", "admin") for i in range(4)]
    order, entry = await paid_after_close(api, kpay_app, money_plugin, amy)
    answers = await asyncio.gather(*[attention_refund(api, t, entry["id"]) for t in admins])
    assert {s for s, _ in answers} <= {200, 409}, answers
    ids = {b["refund"]["id"] for s, b in answers if s == 200}
    assert len(ids) == 1, answers
    assert len(set(money_plugin.provider.refunds)) == 1
    assert await kpay_app.money.orders.refunds.count_documents({"order_id": order["id"]}) == 1
    assert await kpay_app.store["ledger"].count_documents({"_id": {"$regex": "^refund:"}}) == 1
    assert await balance(kpay_app, "external:fakepay") == 0
    assert await balance(kpay_app, "late:fakepay") == 0


@pytest.mark.gen_test
async def test_a_refused_late_refund_keeps_the_money_booked_and_can_be_tried_again(
        api, kpay_app, money_plugin):
    amy, root = await api.login("amy"), await api.login("root", "admin")
    order, entry = await paid_after_close(api, kpay_app, money_plugin, amy)
    money_plugin.provider.refuse_refunds = True
    status, body = await attention_refund(api, root, entry["id"])
    assert status == 502 and body["error"]["code"] == "payment_provider_error"
    [open_entry] = await kpay_app.attention.list()
    assert open_entry["id"] == entry["id"]  # still open
    # The payment is in the books, waiting in late:fakepay to go back.
    assert await balance(kpay_app, "late:fakepay") == 250
    assert await balance(kpay_app, "external:fakepay") == -250
    assert (await kpay_app.money.orders.get(order["id"]))["refunded"] == 0
    money_plugin.provider.refuse_refunds = False
    status, body = await attention_refund(api, root, entry["id"])
    assert status == 200 and body["refund"]["status"] == "succeeded", body
    assert await balance(kpay_app, "late:fakepay") == 0
    assert await balance(kpay_app, "external:fakepay") == 0
    results = [r["details"]["result"] for r in await kpay_app.audit.list(
        action="order.refund_late")]
    assert results == ["succeeded", "payment_provider_error"]


@pytest.mark.gen_test
async def test_a_lost_provider_answer_is_resumed_with_the_same_refund_number(
        api, kpay_app, money_plugin):
    amy, root = await api.login("amy"), await api.login("root", "admin")
    order, entry = await paid_after_close(api, kpay_app, money_plugin, amy)
    money_plugin.provider.lose_next_refund_answer = True
    with pytest.raises(ConnectionError):
        await LatePayments(kpay_app.money.orders).refund(order["id"])
    assert await balance(kpay_app, "late:fakepay") == 250  # pending: booked in, not out
    status, body = await attention_refund(api, root, entry["id"])
    assert status == 200 and body["refund"]["status"] == "succeeded", body
    numbers = money_plugin.provider.refunds
    assert len(numbers) == 2 and len(set(numbers)) == 1
    assert await balance(kpay_app, "late:fakepay") == 0


@pytest.mark.gen_test
async def test_only_paid_after_close_entries_get_the_one_click_refund(
        api, kpay_app, money_plugin):
    amy, root = await api.login("amy"), await api.login("root", "admin")
    status, body = await attention_refund(api, root, "nope")
    assert status == 404 and body["error"]["code"] == "attention_not_found"
    status, body = await attention_refund(api, amy, "nope")
    assert status == 403
    paid = await paid_native_order(api, amy)
    await kpay_app.attention.report("money.fulfil_paid", f"order:{paid['id']}", "boom")
    await kpay_app.attention.report("money.notify", f"order:{paid['id']}", "odd")
    for entry in await kpay_app.attention.list():
        status, body = await attention_refund(api, root, entry["id"])
        assert status == 409 and body["error"]["code"] == "not_paid_after_close", body
        await kpay_app.attention.resolve(entry["id"], "test")
    _, entry = await paid_after_close(api, kpay_app, money_plugin, amy)
    status, body = await attention_refund(api, root, entry["id"], {"reason": "x" * 201})
    assert status == 400 and body["error"]["code"] == "invalid_field"
    status, body = await attention_refund(api, root, entry["id"], {"amount": 1})
    assert status == 400 and body["error"]["field"] == "amount"
    status, body = await attention_refund(api, root, entry["id"])
    assert status == 200


@pytest.mark.gen_test(timeout=120)
async def test_kpay_refund_refunds_from_the_command_line(api, kpay_app, tmp_path):
    amy = await api.login("amy")
    await api.topup(amy, 1000)
    status, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": "g250"},
                                           "channel": "wallet"}, amy)
    assert status == 201, body
    order = body["order"]
    done = await run_kpay(kpay_app, tmp_path, "refund", order["id"], "100", "--reason",
                          "客服处理", "--key", "cli-1")
    assert done.returncode == 0, done.stderr
    assert "100 fen to wallet, succeeded" in done.stdout
    again = await run_kpay(kpay_app, tmp_path, "refund", order["id"], "100", "--reason",
                           "客服处理", "--key", "cli-1")
    assert again.returncode == 0 and "cli-1" in again.stdout
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 1000 - 250 + 100
    too_much = await run_kpay(kpay_app, tmp_path, "refund", order["id"], "999", "--reason", "x")
    assert too_much.returncode == 1 and "cannot refund" in too_much.stderr
    usage = await run_kpay(kpay_app, tmp_path, "refund", order["id"], "100")
    assert usage.returncode == 2
    records = await kpay_app.audit.list(action="order.refund")
    assert {r["source"] for r in records} == {"cli"}
    assert all(r["actor"].startswith("cli") for r in records)
