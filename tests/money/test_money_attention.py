"""A paid order whose fulfilment keeps failing: back-off, then a refund to the wallet and
the needs-attention list; one broken order never stops the fulfil job for the others."""

import json

import pytest
from money_fakes import wallet_order

from kpay.testing import run_kpay

ATTENTION = "/api/v1/admin/attention"


@pytest.fixture
def kpay_overrides():
    return {"plugins": {"enabled": []}, "money": {"fulfil_max_attempts": 3}}


@pytest.mark.gen_test
async def test_failing_fulfilment_backs_off_then_refunds_to_the_wallet(
        api, kpay_app, money_plugin):
    token = await api.login("amy")
    await api.topup(token, 1000)
    money_plugin.kind.fail_always = True
    order = await wallet_order(api, token)
    assert order["status"] == "paid"
    attempts = money_plugin.kind.attempts
    assert attempts[order["id"]] == 1
    await kpay_app.advance_clock(61)  # first retry after 1 minute
    assert attempts[order["id"]] == 2
    await kpay_app.advance_clock(61)  # backing off: the next one is 2 minutes later
    assert attempts[order["id"]] == 2
    await kpay_app.advance_clock(61)  # third and last attempt: given up, refunded
    assert attempts[order["id"]] == 3
    stored = await kpay_app.money.orders.get(order["id"])
    assert stored["status"] == "refunded" and stored["fulfil_gave_up"] is True
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 1000
    assert money_plugin.kind.refunded == [(order["id"], 100)]
    await kpay_app.advance_clock(7200)
    assert attempts[order["id"]] == 3  # never tried again

    admin = await api.login("root", "admin")
    status, body = await api.get(ATTENTION, admin)
    assert status == 200, body
    [entry] = body["entries"]
    assert (entry["source"], entry["subject"]) == ("money.fulfil", f"order:{order['id']}")
    assert entry["details"]["refunded"] == 100 and entry["details"]["attempts"] == 3
    assert "fulfilment crashed for good" in entry["error"]
    status, body = await api.post(f"{ATTENTION}/{entry['id']}/resolve",
                                  {"note": "看过了：商品下架"}, admin)
    assert status == 200 and body["entry"]["status"] == "resolved"
    assert body["entry"]["resolved_by"] == "root"
    status, body = await api.get(ATTENTION, admin)
    assert body["entries"] == []
    status, body = await api.get(f"{ATTENTION}?status=resolved", admin)
    assert [e["id"] for e in body["entries"]] == [entry["id"]]


@pytest.mark.gen_test
async def test_one_broken_order_does_not_stop_the_fulfil_job(api, kpay_app, money_plugin):
    token = await api.login("amy")
    await api.topup(token, 1000)
    money_plugin.kind.fail_every_first = True
    broken, good = await wallet_order(api, token), await wallet_order(api, token, "g250")
    # A record the code cannot read (a field gone) must not stop the job for the rest.
    await kpay_app.money.orders.collection.update_one({"_id": broken["id"]},
                                                      {"$unset": {"kind": ""}})
    await kpay_app.advance_clock(61)
    assert (await kpay_app.money.orders.get(good["id"]))["status"] == "fulfilled"
    # The analytics rollups leave the same broken order out and report it once
    # (docs/analytics.md, "Rollups").
    entries = await kpay_app.attention.list()
    assert sorted((e["source"], e["subject"]) for e in entries) == [
        ("analytics.rollups", f"order:{broken['id']}"),
        ("money.fulfil_paid", f"order:{broken['id']}")]
    await kpay_app.advance_clock(120)  # failing again counts, it does not add rows
    counts = {e["source"]: e["count"] for e in await kpay_app.attention.list()}
    assert counts == {"money.fulfil_paid": 2, "analytics.rollups": 1}
    await kpay_app.money.orders.collection.update_one({"_id": broken["id"]},
                                                      {"$set": {"kind": "test_gadget"}})


@pytest.mark.gen_test
async def test_the_attention_list_is_for_admins(api, kpay_app):
    student = await api.login("amy")
    status, body = await api.get(ATTENTION, student)
    assert status == 403
    admin = await api.login("root", "admin")
    for query in ("?status=maybe", "?limit=0", "?limit=201", "?before=yesterday"):
        status, body = await api.get(ATTENTION + query, admin)
        assert status == 400 and body["error"]["code"] == "invalid_field", (query, body)
    status, body = await api.post(f"{ATTENTION}/nope/resolve", {}, admin)
    assert status == 404 and body["error"]["code"] == "attention_not_found"
    status, body = await api.post(f"{ATTENTION}/nope/resolve", {"note": "x" * 501}, admin)
    assert status == 400


async def given_up_order(api, kpay_app, money_plugin):
    """amy's order whose fulfilment always fails, tried until given up and refunded."""
    token = await api.login("amy")
    await api.topup(token, 1000)
    money_plugin.kind.fail_always = True
    order = await wallet_order(api, token)
    for _ in range(3):
        await kpay_app.advance_clock(3600)
    return order


@pytest.mark.gen_test(timeout=120)
async def test_kpay_attention_lists_and_resolves(api, kpay_app, money_plugin, tmp_path):
    order = await given_up_order(api, kpay_app, money_plugin)

    async def kpay(*args):
        return await run_kpay(kpay_app, tmp_path, *args)

    listed = await kpay("attention", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert entry["subject"] == f"order:{order['id']}"
    plain = await kpay("attention")
    assert entry["id"] in plain.stdout and "fulfilment crashed for good" in plain.stdout
    resolved = await kpay("attention", "--resolve", entry["id"], "--by", "ops",
                          "--note", "refunded")
    assert resolved.returncode == 0, resolved.stderr
    assert (await kpay("attention")).stdout.strip() == "nothing needs attention"
    missing = await kpay("attention", "--resolve", "nope")
    assert missing.returncode == 1 and "no attention entry" in missing.stderr


@pytest.mark.gen_test
async def test_an_order_given_up_is_never_fulfilled_after(api, kpay_app, money_plugin):
    order = await given_up_order(api, kpay_app, money_plugin)
    money_plugin.kind.fail_always = False  # a late call must not deliver a refunded order
    stored = await kpay_app.money.orders.get(order["id"])
    done = await kpay_app.money.orders.fulfil({**stored, "status": "paid"})
    assert done["status"] == "refunded" and money_plugin.kind.fulfils == {}
