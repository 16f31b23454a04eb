"""After creating a room in the console, the page scrolls to the new room: its title
must show below the sticky header, not under it (kpay.css .card scroll-margin-top)."""

from __future__ import annotations

from typing import Any

import pytest
from pagekit import SCREENSHOTS, STATIC
from playwright.async_api import expect
from test_console_rooms import create_room_in_console, open_console


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": ["live_qa"]}}


@pytest.mark.gen_test(timeout=90)
async def test_new_room_title_is_visible_below_the_header(pages, api):
    page, _ = await open_console(pages, api)
    await create_room_in_console(page, "周五晚 8 点：面试答疑")
    title = page.locator("#manage-title")
    await expect(title).to_be_in_viewport()
    scrolled = await page.evaluate("window.scrollY")
    header = await page.locator("header.topbar").bounding_box()
    box = await title.bounding_box()
    assert scrolled > 0, "the page did not scroll to the room: the check would prove nothing"
    assert box["y"] >= header["y"] + header["height"], (box, header)
    # A viewport screenshot: the page as it is scrolled (full-page shots scroll to the top).
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "console-room-created.png"))
