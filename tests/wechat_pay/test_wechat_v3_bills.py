"""The daily bill check (plugins/wechat_pay/bills.py) against the fake v3 server's
trade bills: a clean day, each kind of difference, a tampered file, a malformed row,
one check per day across runs, nodes and restarts; the bill parser's bounds; the
core's read methods it uses (Orders.paid_between, by_out_trade_no)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from wechat_helpers import create_order
from wechat_v3_helpers import paid_v3_order

from kpay.testing import assert_books_balanced
from plugins.wechat_pay import bills
from plugins.wechat_pay.v3_fake_bills import HEADER, bill_line

DAY = "2026-03-02"  # the pinned test day (Beijing); checked the next morning
NEXT_MORNING = timedelta(days=1, minutes=30)  # 2026-03-03 10:30 Beijing


@pytest.fixture
def kpay_overrides(fake_wechat_v3, tmp_path):
    return {"wechat_pay": fake_wechat_v3.settings(tmp_path / "keys")}


@pytest.fixture
def fake(fake_wechat_v3, kpay_app):
    # The fixture gives the fake the app's clock: its bills fall on the test's days.
    assert fake_wechat_v3.now() - kpay_app.clock.now() < timedelta(seconds=5)
    return fake_wechat_v3


async def entries(app) -> dict[str, dict]:
    listed = await app.attention.list(status=None, limit=200)
    return {e["subject"]: e for e in listed if e["source"] == bills.SOURCE}


async def day_record(app, day: str = DAY) -> dict | None:
    return await app.store[bills.CHECKS].find_one({"_id": day})


async def next_morning_check(app) -> None:
    app.clock.advance(NEXT_MORNING.total_seconds())
    await app.scheduler.run_job(bills.SOURCE)


@pytest.mark.gen_test(timeout=40)
async def test_a_clean_day_reports_nothing(api, kpay_app, fake):
    _, first = await paid_v3_order(api, fake, "native", 500)
    await paid_v3_order(api, fake, "jsapi", 700, user="sam")
    refund = await kpay_app.money.orders.refund(first["id"], 200, "changed_mind",
                                                to="original")
    assert refund["status"] == "succeeded"
    await next_morning_check(kpay_app)
    assert await entries(kpay_app) == {}
    record = await day_record(kpay_app)
    assert record["status"] == "done"
    assert (record["payments"], record["refunds"], record["differences"]) == (2, 1, 0)
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=40)
async def test_each_difference_is_one_attention_entry(api, kpay_app, fake):
    _, refunded = await paid_v3_order(api, fake, "native", 500)
    _, missing = await paid_v3_order(api, fake, "native", 600)
    _, wrong = await paid_v3_order(api, fake, "native", 700)
    refund = await kpay_app.money.orders.refund(refunded["id"], 200, "changed_mind",
                                                to="original")
    fake.bills.plant(DAY, bill_line(kpay_app.clock.now(), fake.appid, fake.mchid,
                                    "4200ghost", "oghost", 300))  # paid only at WeChat
    fake.bills.omit.add(missing["out_trade_no"])  # paid only in kpay
    fake.bills.amounts[wrong["out_trade_no"]] = 701
    fake.bills.amounts[refund["out_refund_no"]] = 150

    await next_morning_check(kpay_app)

    found = await entries(kpay_app)
    refund_subject = f"bill:{DAY}:{refunded['out_trade_no']}/{refund['out_refund_no']}"
    assert set(found) == {f"bill:{DAY}:oghost", f"bill:{DAY}:{missing['out_trade_no']}",
                          f"bill:{DAY}:{wrong['out_trade_no']}", refund_subject}
    ghost = found[f"bill:{DAY}:oghost"]
    assert "no such order in kpay" in ghost["error"]
    assert ghost["details"]["wechat"]["amount"] == 300 and ghost["details"]["kpay"] is None
    gone = found[f"bill:{DAY}:{missing['out_trade_no']}"]
    assert "not in WeChat's bill" in gone["error"]
    assert gone["details"]["kpay"]["amount"] == 600 and gone["details"]["wechat"] == {}
    assert found[f"bill:{DAY}:{wrong['out_trade_no']}"]["error"] == \
        "WeChat says 701 fen, kpay 700 fen"
    assert found[refund_subject]["details"]["kpay"]["amount"] == 200
    assert found[refund_subject]["details"]["wechat"]["amount"] == 150
    assert all(e["count"] == 1 for e in found.values())
    assert (await day_record(kpay_app))["differences"] == 4
    await assert_books_balanced(kpay_app)  # the check moves no money


@pytest.mark.gen_test(timeout=40)
async def test_a_tampered_bill_is_refused_reported_and_tried_again(api, kpay_app, fake):
    _, order = await paid_v3_order(api, fake, "native", 500)
    fake.bills.amounts[order["out_trade_no"]] = 1  # would be a difference, if believed
    fake.bills.tamper = True
    await next_morning_check(kpay_app)
    found = await entries(kpay_app)
    assert list(found) == [f"bill:{DAY}:file"]
    assert "SHA1" in found[f"bill:{DAY}:file"]["error"]
    record = await day_record(kpay_app)
    assert record["status"] == "retry" and record["attempts"] == 1

    fake.bills.tamper = False
    del fake.bills.amounts[order["out_trade_no"]]
    await kpay_app.scheduler.run_job(bills.SOURCE)  # not yet: retried an hour later
    assert fake.calls["bill/tradebill"] == 1
    kpay_app.clock.advance(bills.RETRY_AFTER.total_seconds())
    await kpay_app.scheduler.run_job(bills.SOURCE)
    assert fake.calls["bill/tradebill"] == 2
    assert (await day_record(kpay_app))["status"] == "done"
    assert list(await entries(kpay_app)) == [f"bill:{DAY}:file"]


@pytest.mark.gen_test(timeout=40)
async def test_malformed_rows_are_reported_and_the_rest_is_compared(api, kpay_app, fake):
    _, good = await paid_v3_order(api, fake, "native", 500)
    _, wrong = await paid_v3_order(api, fake, "native", 600)
    fake.bills.amounts[wrong["out_trade_no"]] = 601
    fake.bills.plant(DAY, "`2026-03-02 10:00:00,`broken")
    bad_amount = bill_line(kpay_app.clock.now(), fake.appid, fake.mchid, "4200x", "obad", 100)
    fake.bills.plant(DAY, bad_amount.replace("`1.00", "`1.005"))

    await next_morning_check(kpay_app)

    found = await entries(kpay_app)
    lines = sorted(s for s in found if ":line:" in s)
    assert len(lines) == 2 and f"bill:{DAY}:{wrong['out_trade_no']}" in found
    assert len(found) == 3  # the good order matched
    assert "fields where the header has" in found[lines[0]]["error"] + \
        found[lines[1]]["error"]
    record = await day_record(kpay_app)
    assert (record["status"], record["payments"], record["malformed"]) == ("done", 2, 2)
    assert good["out_trade_no"] not in {s.rsplit(":", 1)[-1] for s in found}


@pytest.mark.gen_test(timeout=40)
async def test_a_day_is_checked_once_across_runs_nodes_and_restarts(api, kpay_app, fake,
                                                                     second_node):
    await paid_v3_order(api, fake, "native", 500)
    second_node.clock.advance(NEXT_MORNING.total_seconds())
    kpay_app.clock.advance(NEXT_MORNING.total_seconds())
    # Two nodes at once, then again on each (a restart is a new app on the same data).
    await asyncio.gather(kpay_app.scheduler.run_job(bills.SOURCE),
                         second_node.scheduler.run_job(bills.SOURCE))
    await kpay_app.scheduler.run_job(bills.SOURCE)
    await second_node.scheduler.run_job(bills.SOURCE)
    assert fake.calls["bill/tradebill"] == 1 and fake.calls["billdownload"] == 1
    assert (await day_record(kpay_app))["status"] == "done"
    # Before the hour, the day before yesterday is due: checked already, nothing runs.
    kpay_app.clock.advance(timedelta(hours=23).total_seconds())  # 09:30 on 03-04
    await kpay_app.scheduler.run_job(bills.SOURCE)
    assert fake.calls["bill/tradebill"] == 1
    assert await entries(kpay_app) == {}


@pytest.mark.gen_test(timeout=40)
async def test_a_day_without_trades_is_clean_and_a_dead_claim_is_taken_over(kpay_app, fake):
    # A node claimed the day and died: after STALE_CLAIM another checks it.
    kpay_app.clock.advance(NEXT_MORNING.total_seconds())
    await kpay_app.store[bills.CHECKS].insert_one({
        "_id": DAY, "status": "checking", "claimed_at": kpay_app.clock.now(),
        "node": "dead", "attempts": 0})
    await kpay_app.scheduler.run_job(bills.SOURCE)
    assert fake.calls["bill/tradebill"] == 0
    kpay_app.clock.advance(bills.STALE_CLAIM.total_seconds() + 1)
    await kpay_app.scheduler.run_job(bills.SOURCE)
    assert fake.calls["bill/tradebill"] == 1  # answered NO_STATEMENT_EXIST: no trades
    record = await day_record(kpay_app)
    assert (record["status"], record["payments"], record["differences"]) == ("done", 0, 0)


@pytest.mark.gen_test(timeout=40)
async def test_orders_paid_between_is_bounded_and_by_provider(api, kpay_app, fake):
    _, first = await paid_v3_order(api, fake, "native", 500)
    _, second = await paid_v3_order(api, fake, "native", 600)
    token = await api.login("pat")
    await create_order(api, token, "native", 900)  # pending: not paid
    orders = kpay_app.money.orders
    now = kpay_app.clock.now()
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    found = [o["out_trade_no"] async for o in orders.paid_between(["wechat_pay_v3"],
                                                                  start, end)]
    assert sorted(found) == sorted([first["out_trade_no"], second["out_trade_no"]])
    assert [o async for o in orders.paid_between(["wechat_pay"], start, end)] == []
    assert [o async for o in orders.paid_between(["wechat_pay_v3"], end, end)] == []
    with pytest.raises(OverflowError):
        [o async for o in orders.paid_between(["wechat_pay_v3"], start, end, limit=1)]
    by_number = await orders.by_out_trade_no([first["out_trade_no"], "nope"])
    assert list(by_number) == [first["out_trade_no"]]
    with pytest.raises(ValueError):
        await orders.by_out_trade_no(["x"] * 1001)


# -- the parser, alone ------------------------------------------------------------------

def test_amounts_are_exact_fen():
    assert bills.fen("5.00") == 500 and bills.fen("0.01") == 1 and bills.fen("12") == 1200
    for bad in ("1.005", "-1.00", "abc", "NaN", "Infinity", ""):
        with pytest.raises(ValueError):
            bills.fen(bad)


def test_a_file_that_is_not_a_bill_is_refused():
    for data in (b"", b"\xff\xfe\x00", "交易时间,商户号\r\n`x,`y".encode()):
        with pytest.raises(bills.BillRefused):
            bills.parse_bill(data)


def test_the_row_count_is_bounded():
    from datetime import datetime

    moment = datetime(2026, 3, 2, 10)
    rows = [bill_line(moment, "wx", "1900", f"t{i}", f"o{i}", 100) for i in range(5)]
    data = "\r\n".join([HEADER, *rows]).encode()
    assert len(bills.parse_bill(data).payments) == 5
    with pytest.raises(bills.BillRefused, match="more than 4 rows"):
        bills.parse_bill(data, max_rows=4)


def test_a_row_paid_twice_and_a_summary_that_disagrees_are_noticed():
    from datetime import datetime

    row = bill_line(datetime(2026, 3, 2, 10), "wx", "1900", "t1", "o1", 100)
    data = "\r\n".join([HEADER, row, row, "总交易单数,应结订单总金额", "`5,`1.00"]).encode()
    bill = bills.parse_bill(data)
    assert list(bill.payments) == ["o1"] and len(bill.malformed) == 1
    assert bill.declared_rows == 5 and bill.rows == 2


def test_a_summary_count_of_other_digits_is_not_read():
    from datetime import datetime

    # "²" passes str.isdigit() but not int(): the count is unknown, the bill still read.
    row = bill_line(datetime(2026, 3, 2, 10), "wx", "1900", "t1", "o1", 100)
    data = "\r\n".join([HEADER, row, "总交易单数,应结订单总金额", "`²,`1.00"]).encode()
    bill = bills.parse_bill(data)
    assert list(bill.payments) == ["o1"] and bill.declared_rows is None


@pytest.mark.kpay_now("2026-03-02T00:00:30+08:00")
@pytest.mark.gen_test(timeout=40)
async def test_a_payment_across_midnight_is_found_in_the_day_before(api, kpay_app, fake):
    # WeChat counts it at 23:59:30 on 03-01; kpay books it at 00:00:30 on 03-02.
    fake.now = lambda: kpay_app.clock.now() - timedelta(minutes=1)
    await paid_v3_order(api, fake, "native", 500)
    _, lost = await paid_v3_order(api, fake, "native", 600)
    fake.bills.omit.add(lost["out_trade_no"])  # in neither day's bill
    kpay_app.clock.advance(timedelta(hours=34).total_seconds())  # 03-03 10:00:30
    await kpay_app.scheduler.run_job(bills.SOURCE)
    assert fake.calls["bill/tradebill"] == 2  # 03-02 (without them), then 03-01, once
    assert list(await entries(kpay_app)) == [f"bill:{DAY}:{lost['out_trade_no']}"]
    assert (await day_record(kpay_app))["status"] == "done"


@pytest.mark.gen_test(timeout=40)
async def test_a_bill_over_the_size_limit_is_refused(api, kpay_app, fake, monkeypatch):
    await paid_v3_order(api, fake, "native", 500)
    monkeypatch.setattr(bills, "MAX_BILL_BYTES", 100)
    await next_morning_check(kpay_app)
    found = await entries(kpay_app)
    assert list(found) == [f"bill:{DAY}:file"]
    assert "over 100 bytes" in found[f"bill:{DAY}:file"]["error"]
    assert (await day_record(kpay_app))["status"] == "retry"
