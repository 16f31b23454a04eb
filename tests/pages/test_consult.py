"""The student's consultation page (consult.html) with the consultant in the console, in two
browser contexts, against the real consult_billing plugin: set the rate, a request refused
for funds (the shortfall and 去充值), the accept, the meter ticking as the dev clock moves,
the low-balance warning, the end when the wallet runs out, the summary on both sides, the
receipt in the history; and the voice call's clear fallback where the browser has none."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pagekit import CHROMIUM, CHROMIUM_ARGS, STATIC, PageKit
from playwright.async_api import expect

NO_MICROPHONE = "delete Navigator.prototype.mediaDevices; delete window.RTCPeerConnection;"


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["consult_billing"]}}


def yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


async def consultant_console(pages, api, user="coach"):
    token = await api.login(user, "consultant", name="王老师")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/console.html#consult")
    await expect(page.get_by_role("tab", name="咨询")).to_have_attribute("aria-selected", "true")
    return page, token


async def set_rate(page, yuan="1", least="2", most="60"):
    await page.get_by_label("每分钟价格（元）").fill(yuan)
    await page.get_by_label("最少分钟").fill(least)
    await page.get_by_label("最长分钟").fill(most)
    await page.get_by_role("button", name="保存设置").click()
    await expect(page.locator("#profile-saved")).to_contain_text("已保存")


async def present_both(api, token, consultation_id):
    """Wait until both parties' sockets are on consult:<id> (the meter runs only then)."""
    for _ in range(200):
        _, c = await api.get(f"/api/v1/consultations/{consultation_id}", token=token)
        if c["present"] == {"student": True, "consultant": True}:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("both parties never joined the consultation channel")


@pytest.mark.gen_test(timeout=120)
async def test_a_consultation_from_request_to_funds_exhausted(pages, api, kpay_app):
    console, coach = await consultant_console(pages, api)
    await set_rate(console)
    _, profile = await api.get("/api/v1/consultants/me", token=coach)
    assert (profile["profile"]["rate_per_minute"], profile["profile"]["min_minutes"]) == (100, 2)

    student = await api.login("amy", "student")
    await api.topup(student, 150)
    page = await pages.new_page(token=student)
    await pages.open(page, "/static/consult.html")
    card = page.locator("#consultant-list li", has_text="王老师")
    await expect(card).to_contain_text("¥1.00/分钟")
    await expect(card).to_contain_text("最少 2 分钟")

    # Two minutes at ¥1.00 need ¥2.00: refused with the shortfall and a way to top up.
    await card.get_by_role("button", name="向 王老师 发起咨询").click()
    await expect(page.locator("#request-error-text")).to_have_text(
        "余额不足：需要 ¥2.00，当前余额 ¥1.50，还差 ¥0.50")
    await expect(page.locator("#request-topup")).to_have_attribute("href", "/static/wallet.html")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "consult-insufficient")
    _, mine = await api.get("/api/v1/consultations", token=student)
    assert mine["consultations"] == []

    await api.topup(student, 500)  # ¥6.50: six minutes and a half
    await card.get_by_role("button", name="向 王老师 发起咨询").click()
    await expect(page.locator("#session-state")).to_have_text("等待咨询师接受…")
    await expect(page.locator("#cancel")).to_be_visible()
    await pages.screenshot(page, "consult-waiting")

    # The request reaches the console live; the consultant accepts: minute 1 is charged.
    request = console.locator("#request-list li", has_text="学生 amy")
    await expect(request).to_contain_text("¥1.00/分钟，最少 2 分钟")
    await pages.screenshot(console, "console-consult-request")
    await request.get_by_role("button", name="接受 amy 的咨询请求").click()
    await expect(page.locator("#session-state")).to_have_text("咨询中")
    await expect(page.locator("#meter-minute")).to_have_text("第 1 分钟")
    await expect(page.locator("#meter-charged")).to_have_text("¥1.00")
    await expect(page.locator("#meter-balance")).to_have_text("¥5.50")
    await expect(page.locator("#meter-left")).to_have_text("5 分钟")
    await expect(page.locator("#low-balance")).to_be_hidden()
    await expect(console.locator("#cs-state")).to_have_text("咨询中")
    await expect(console.locator("#cs-minute")).to_have_text("第 1 分钟")
    await expect(console.locator("#request-list li")).to_have_count(0)
    _, listed = await api.get("/api/v1/consultations", token=student)
    consultation_id = listed["consultations"][0]["id"]
    await present_both(api, student, consultation_id)

    await kpay_app.advance_clock(60)
    await expect(page.locator("#meter-minute")).to_have_text("第 2 分钟")
    await expect(page.locator("#meter-balance")).to_have_text("¥4.50")
    await expect(page.locator("#low-balance")).to_be_hidden()
    await kpay_app.advance_clock(60)
    await expect(page.locator("#meter-minute")).to_have_text("第 3 分钟")
    await expect(page.locator("#meter-charged")).to_have_text("¥3.00")
    await expect(page.locator("#meter-left")).to_have_text("3 分钟")
    # Three minutes left: the warning, with a top-up link that keeps the call open.
    await expect(page.locator("#low-balance-text")).to_have_text(
        "余额不足：当前余额 ¥3.50，还可通话 3 分钟。充值后咨询不中断。")
    await expect(page.locator("#low-balance").get_by_role("link", name="去充值")).to_be_visible()
    await expect(console.locator("#cs-low")).to_have_text("学生余额不足，还可通话 3 分钟")
    await expect(console.locator("#cs-charged")).to_have_text("¥3.00")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "consult-low-balance")
    await pages.screenshot(console, "console-consult-running")

    # Four more minutes: three are paid, the seventh cannot be.
    await kpay_app.advance_clock(240)
    await expect(page.locator("#session-state")).to_have_text("已结束")
    await expect(page.locator("#summary-reason")).to_have_text("余额已用完")
    summary = page.locator("#summary-list")
    await expect(summary).to_contain_text("计费分钟6 分钟")
    await expect(summary).to_contain_text("共计扣费¥6.00")
    await expect(page.locator("#low-balance")).to_be_hidden()
    await expect(page.locator("#end")).to_be_hidden()
    await pages.check_accessibility(page)
    await pages.screenshot(page, "consult-summary")

    status, final = await api.get(f"/api/v1/consultations/{consultation_id}", token=student)
    assert status == 200
    assert (final["status"], final["end_reason"], final["billed_minutes"], final["charged"]) == (
        "ended", "funds_exhausted", 6, 600)
    _, wallet = await api.get("/api/v1/wallet", token=student)
    assert wallet["balance"] == 50
    await expect(console.locator("#cs-summary-reason")).to_have_text("余额已用完")
    await expect(console.locator("#cs-summary-list")).to_contain_text(
        "我的收入" + yuan(final["consultant_earned"]))
    await expect(console.locator("#console-earnings-balance")).to_have_text(
        yuan(final["consultant_earned"]))
    await expect(console.locator("#consult-earned-total")).to_have_text(
        yuan(final["consultant_earned"]))
    await expect(console.locator("#consult-earnings-entries li").first).to_contain_text(
        "咨询第 6 分钟")
    await expect(console.locator("#consult-past-list li")).to_have_count(1)
    await pages.check_accessibility(console)
    await pages.screenshot(console, "console-consult-summary")

    # The history keeps it, with the receipt minute by minute from the ledger.
    past = page.locator("#history-list li[data-id]")
    await expect(past).to_have_count(1)
    await expect(past.locator(".person")).to_have_text("王王老师")  # face + nickname
    await expect(past).to_contain_text("-¥6.00")
    await past.get_by_role("button", name="查看收据").click()
    await expect(past.locator(".receipt .entries li")).to_have_count(6)
    await expect(past.locator(".receipt-total")).to_have_text("共 6 分钟，合计 ¥6.00")
    await pages.screenshot(page, "consult-history-receipt")


@pytest.mark.gen_test(timeout=90)
async def test_the_student_ends_and_a_browser_without_calls_says_so(pages, api, kpay_app):
    coach = await api.login("coach", "consultant")
    status, _ = await api.put("/api/v1/consultants/me",
                              {"rate_per_minute": 300, "min_minutes": 1}, coach)
    assert status == 200
    student = await api.login("ben", "student")
    await api.topup(student, 5000)
    page = await pages.new_page(token=student, init_script=NO_MICROPHONE)
    await pages.open(page, "/static/consult.html")
    await page.get_by_role("button", name="向 coach 发起咨询").click()
    await expect(page.locator("#session-state")).to_have_text("等待咨询师接受…")
    _, listed = await api.get("/api/v1/consultations", token=student)
    consultation_id = listed["consultations"][0]["id"]
    # The consultant accepts from another client (its own socket joins the channel).
    ws = await api.socket(coach)
    assert (await ws.request("sub", ch=f"consult:{consultation_id}"))["ok"]
    status, _ = await api.post(f"/api/v1/consultations/{consultation_id}/accept", token=coach)
    assert status == 200
    await expect(page.locator("#meter-charged")).to_have_text("¥3.00")
    await expect(page.locator("#call-unsupported")).to_contain_text("此浏览器不支持语音通话")
    await expect(page.locator("#call")).to_be_hidden()
    await pages.screenshot(page, "consult-no-call")

    # A page opened later picks the running consultation up again.
    await page.reload()
    await expect(page.locator("#session-state")).to_have_text("咨询中")
    await expect(page.locator("#meter-charged")).to_have_text("¥3.00")
    await present_both(api, student, consultation_id)
    await page.get_by_role("button", name="结束咨询").click()
    await expect(page.locator("#summary-reason")).to_have_text("学生结束了咨询")
    await expect(page.locator("#summary-list")).to_contain_text("共计扣费¥3.00")
    _, final = await api.get(f"/api/v1/consultations/{consultation_id}", token=student)
    assert (final["status"], final["end_reason"], final["charged"]) == (
        "ended", "ended_by_student", 300)
    ws.close()

    # 再次咨询 goes back to the list.
    await page.get_by_role("button", name="再次咨询").click()
    await expect(page.locator("#consultants")).to_be_visible()
    await expect(page.locator("#history-list li[data-id]")).to_have_count(1)


@pytest.fixture
def call_browser(io_loop: Any) -> Any:
    """Chromium with a fake microphone that needs no permission prompt, for the call."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}")
    from playwright.async_api import async_playwright

    playwright = io_loop.run_sync(lambda: async_playwright().start())
    launched = io_loop.run_sync(lambda: playwright.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--use-fake-device-for-media-stream",
                                        "--use-fake-ui-for-media-stream"]))
    yield launched
    io_loop.run_sync(launched.close)
    io_loop.run_sync(playwright.stop)


@pytest.mark.gen_test(timeout=90)
async def test_voice_call_signalling_through_the_consult_channel(call_browser, kpay_app, api):
    pages = PageKit(call_browser, f"http://127.0.0.1:{kpay_app.port}")
    try:
        console, _ = await consultant_console(pages, api)
        await set_rate(console, yuan="0.50", least="1")
        student = await api.login("cat", "student")
        await api.topup(student, 1000)
        page = await pages.new_page(token=student)
        await pages.open(page, "/static/consult.html")
        await page.get_by_role("button", name="向 王老师 发起咨询").click()
        await console.get_by_role("button", name="接受 cat 的咨询请求").click()
        await expect(page.locator("#session-state")).to_have_text("咨询中")

        # The student calls; the offer reaches the console through consult:<id>.
        await page.get_by_role("button", name="开始语音通话").click()
        await expect(console.locator("#cs-call-state")).to_have_text("学生发起了语音通话")
        await console.get_by_role("button", name="接听语音").click()
        await expect(console.locator("#cs-call-state")).to_have_text("通话已接通", timeout=15000)
        await expect(page.locator("#call-state")).to_have_text("通话已接通", timeout=15000)
        await expect(page.get_by_role("button", name="挂断语音")).to_be_visible()
        await expect(page.get_by_role("button", name="开始语音通话")).to_be_hidden()
        await pages.screenshot(page, "consult-call-connected")
        await pages.screenshot(console, "console-consult-call")
        # The meter is not affected by the call.
        _, listed = await api.get("/api/v1/consultations", token=student)
        assert listed["consultations"][0]["charged"] == 50
    finally:
        await pages.close()
    assert pages.problems == [], "\n".join(pages.problems)


@pytest.mark.gen_test(timeout=60)
async def test_a_slow_first_read_does_not_undo_the_accept(pages, api, kpay_app):
    """The page reads the consultation and wallet when it starts following; an accept that
    arrives while that read is on the way must stay shown (it used to flip back to
    等待咨询师接受… on a busy machine, after the call had started)."""
    console, _ = await consultant_console(pages, api)
    await set_rate(console, yuan="0.50", least="1")
    student = await api.login("cat", "student")
    await api.topup(student, 1000)
    page = await pages.new_page(token=student)
    await pages.open(page, "/static/consult.html")
    held = asyncio.Event()

    async def hold_the_wallet(route):
        held.set()
        await asyncio.sleep(1.5)  # the accept lands in the meantime
        await route.continue_()

    await page.route("**/api/v1/wallet", hold_the_wallet)
    await page.get_by_role("button", name="向 王老师 发起咨询").click()
    await asyncio.wait_for(held.wait(), 10)
    await console.get_by_role("button", name="接受 cat 的咨询请求").click()
    await expect(page.locator("#session-state")).to_have_text("咨询中")
    await asyncio.sleep(2.5)  # every held read has come back by now
    await expect(page.locator("#session-state")).to_have_text("咨询中", timeout=1)
    await expect(page.locator("#meter-balance")).not_to_have_text("—")
    await page.unroute_all(behavior="wait")
