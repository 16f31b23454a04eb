"""The socket in a real page: connection state shown, reconnect, resume with ``since``."""

import asyncio

import pytest
from pagekit import STATIC, drop_every_socket
from playwright.async_api import expect

# Records every state the badge shows (a state can last less than a poll interval).
RECORD_BADGE = """
() => {
  window.__badgeStates = [];
  const badge = document.querySelector('#connection');
  new MutationObserver(() => window.__badgeStates.push(badge.dataset.state))
    .observe(badge, { attributes: true, attributeFilter: ['data-state'] });
}
"""


async def logged_in(pages, api, path="/", user="alice"):
    token = await api.login(user, "student")
    page = await pages.new_page(token=token)
    await pages.open(page, path)
    await expect(page.locator("#connection")).to_have_text("已连接")
    return page


async def saved(kpay_app, text, user="alice"):
    """A notification saved for ``user`` (not yet sent: see ``send``)."""
    return await kpay_app.notifications.add(user, "系统通知", text)


async def send(kpay_app, notice, user="alice"):
    """The event app.tell_user sends for a saved notification."""
    await kpay_app.publish(f"user:{user}", "notification", notice)


@pytest.mark.gen_test(timeout=60)
async def test_page_reconnects_and_resumes_missed_events(pages, api, kpay_app):
    page = await logged_in(pages, api, "/static/notifications.html")
    first = await saved(kpay_app, "第一条")
    await send(kpay_app, first)
    notices = page.locator("#notice-list li")
    await expect(notices).to_have_count(1)
    await expect(notices.first).to_contain_text("第一条")
    await page.evaluate(RECORD_BADGE)
    second = await saved(kpay_app, "第二条")

    assert drop_every_socket(kpay_app) == 1
    # Sent before the page can reconnect (no await in between): the page only gets it
    # by resuming with since=<last seq>.
    await send(kpay_app, second)

    await expect(page.locator("#connection")).to_have_text("已连接")
    await expect(notices).to_have_count(2)
    await expect(notices.first).to_contain_text("第二条")
    states = await page.evaluate("window.__badgeStates")
    assert states[:1] == ["reconnecting"] and states[-1] == "online", states
    assert len(kpay_app.sockets) == 1
    await pages.screenshot(page, "notifications-resumed")

    # Live events still arrive on the new socket, once each.
    third = await saved(kpay_app, "第三条")
    await send(kpay_app, third)
    await expect(notices).to_have_count(3)
    ids = await notices.evaluate_all("(items) => items.map((li) => li.dataset.id)")
    assert ids == [third["id"], second["id"], first["id"]]


LOST_HISTORY = {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": []},
                "realtime": {"history_size": 0}}


@pytest.mark.parametrize("kpay_overrides", [LOST_HISTORY])
@pytest.mark.gen_test(timeout=60)
async def test_page_refetches_when_the_server_lost_the_history(pages, api, kpay_app):
    page = await logged_in(pages, api, "/static/notifications.html")
    await send(kpay_app, await saved(kpay_app, "第一条"))
    await expect(page.locator("#notice-list li")).to_have_count(1)

    drop_every_socket(kpay_app)
    await send(kpay_app, await saved(kpay_app, "丢失的一条"))

    # recovered:false -> the page reads the list again instead of pretending.
    await expect(page.locator("#connection")).to_have_text("已连接")
    await expect(page.locator("#notice-list li")).to_have_count(2)
    await expect(page.locator("#notice-list li").first).to_contain_text("丢失的一条")


@pytest.mark.gen_test(timeout=60)
async def test_browser_offline_and_back_online(pages, api, kpay_app):
    page = await logged_in(pages, api, "/static/notifications.html")
    await page.context.set_offline(True)
    await expect(page.locator("#connection")).to_have_text("离线")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    await pages.screenshot(page, "notifications-offline")
    await page.context.set_offline(False)
    await expect(page.locator("#connection")).to_have_text("已连接")
    await send(kpay_app, await saved(kpay_app, "回来了"))
    await expect(page.locator("#notice-list li")).to_have_count(1)


@pytest.mark.gen_test(timeout=60)
async def test_a_refused_token_stops_reconnecting_and_asks_to_log_in(pages, api, kpay_app):
    page = await logged_in(pages, api)
    # A token from another secret: the REST check passed at load; the socket now refuses it.
    await page.evaluate("localStorage.setItem('kpay.token', 'forged.token.value')")
    drop_every_socket(kpay_app)
    await expect(page.locator("#connection")).to_have_text("离线")
    await expect(page.get_by_role("alert")).to_have_text("登录已失效，请重新登录")
    await expect(page.locator("#dev-login")).to_be_visible()


@pytest.mark.gen_test(timeout=60)
async def test_a_notice_arriving_while_the_list_is_reread_stays(pages, api, kpay_app):
    # After a reconnect with nothing seen yet, the page reads its list again. A notice
    # that arrives live while that read is on its way is newer than what the read saw:
    # drawing the read's answer must not wipe it (failed once in a full run after the
    # browser came back online).
    page = await logged_in(pages, api, "/static/notifications.html")
    read, release = asyncio.Event(), asyncio.Event()

    async def hold_the_answer(route):
        answer = await route.fetch()  # the server reads the list now: empty
        read.set()
        await release.wait()
        await route.fulfill(response=answer)

    await page.route("**/api/v1/notifications?*", hold_the_answer)
    assert drop_every_socket(kpay_app) == 1
    await asyncio.wait_for(read.wait(), 15)
    await send(kpay_app, await saved(kpay_app, "读取途中到达"))
    notices = page.locator("#notice-list li")
    await expect(notices).to_have_count(1)
    release.set()
    await expect(page.locator("#unread-text")).to_have_text("1 条未读")
    await expect(notices).to_have_count(1)
    await expect(notices.first).to_contain_text("读取途中到达")
