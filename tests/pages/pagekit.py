"""Helpers of the page tests: the browser set-up, PageKit and the WeChat Pay stand-in.

See conftest.py for how the browser tests run.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kpay import hookimpl
from kpay.core.money import accounts
from kpay.core.money.kinds import OrderKind, Priced
from kpay.testing import FakeProvider, FakeProviderPlugin

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "static"
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = os.environ.get("KPAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}

DESKTOP_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/126.0 Safari/537.36")
PHONE_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0 Mobile Safari/537.36")
WECHAT_UA = PHONE_UA + " MicroMessenger/8.0.50.2701(0x28003256) NetType/WIFI Language/zh_CN"

# A 4xx answer of the API is logged by chromium as a console error, but the page handles it.
HANDLED_API_ERROR = re.compile(r"Failed to load resource: the server responded with a status "
                               r"of 4\d\d")
# Chromium's console line for anything the Content-Security-Policy blocked ("Refused to
# load/execute/connect ... because it violates the following Content Security Policy
# directive"), whatever level it is logged at.
CSP_CONSOLE = re.compile(r"Content Security Policy|Content-Security-Policy")

# Runs in every page before its own scripts: reports each ``securitypolicyviolation``
# event (script, style, image, media, connect, frame ... blocked by the CSP) to the test
# through the ``kpayCspViolation`` binding, so a violation fails the test even when the
# console line is missed or worded differently.
CSP_REPORTER = """
document.addEventListener('securitypolicyviolation', (e) => {
  const where = e.sourceFile ? ` at ${e.sourceFile}:${e.lineNumber}:${e.columnNumber}` : '';
  const sample = e.sample ? ` sample ${JSON.stringify(e.sample)}` : '';
  window.kpayCspViolation(`${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'}`
    + ` on ${e.documentURI}${where}${sample}`);
}, true);
"""


def drop_every_socket(kpay_app: Any) -> int:
    """Close every socket from the server side, as a restarting node would."""
    sockets = list(kpay_app.sockets)
    for socket in sockets:
        socket.close(1012, "service restart")
    return len(sockets)


@contextlib.asynccontextmanager
async def timers_held(page: Any) -> AsyncIterator[None]:
    """The page's timers stand still inside the block, so a socket dropped there
    reconnects only after it, whatever the machine's load. The page's clock must have
    been installed (``await page.clock.install()``) before it opened."""
    now = await page.evaluate("Date.now()")
    await page.clock.pause_at(now + 1)
    try:
        yield
    finally:
        await page.clock.resume()




class PageTestItem(OrderKind):
    """Something to buy for 3 yuan on any channel (wallet_topup cannot be paid by wallet)."""

    name = "page_test_item"

    async def price(self, app: Any, user: Any, item: dict[str, Any]) -> Priced:
        return Priced(300, "测试商品", [(accounts.PLATFORM_REVENUE, 300)], {"kind": self.name})

    async def fulfil(self, app: Any, order: dict[str, Any]) -> None:
        """Nothing to grant."""


class StandInPlugin(FakeProviderPlugin):
    """WeChat Pay stood in for by the shared fake provider: it hands out what the real
    provider hands the page (a code_url, JSAPI parameters)."""

    def __init__(self) -> None:
        super().__init__(FakeProvider("standin", ("native", "jsapi")))

    @hookimpl
    def register_order_kinds(self, app: Any) -> list[OrderKind]:
        return [PageTestItem()]


class PageKit:
    """Opens pages of the app under test in phone-sized contexts and checks them."""

    def __init__(self, browser: Any, base: str) -> None:
        self.browser = browser
        self.base = base
        self.problems: list[str] = []
        self.contexts: list[Any] = []

    async def new_page(self, user_agent: str = DESKTOP_UA, token: str | None = None,
                       init_script: str | None = None) -> Any:
        """A new 390x844 page (own context: own localStorage), logged in with ``token``."""
        mobile = user_agent != DESKTOP_UA
        context = await self.browser.new_context(
            viewport=PHONE, user_agent=user_agent, locale="zh-CN", timezone_id="Asia/Shanghai",
            is_mobile=mobile, has_touch=mobile)
        self.contexts.append(context)
        await context.expose_function(
            "kpayCspViolation",
            lambda text: self.problems.append(f"CSP violation: {text}"))
        await context.add_init_script(CSP_REPORTER)
        if token:
            # Set before any page script runs, once: a later logout stays logged out.
            await context.add_init_script(
                "if (!sessionStorage.getItem('kpay.test.seeded')) {"
                f"  localStorage.setItem('kpay.token', {token!r});"
                "  sessionStorage.setItem('kpay.test.seeded', '1'); }")
        if init_script:
            await context.add_init_script(init_script)
        page = await context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        return page

    def _console(self, message: Any) -> None:
        url = (message.location or {}).get("url", "")
        if CSP_CONSOLE.search(message.text):
            self.problems.append(f"console CSP message: {message.text} ({url})")
            return
        if message.type != "error":
            return
        if HANDLED_API_ERROR.search(message.text) and "/api/" in url:
            return
        self.problems.append(f"console error: {message.text} ({url})")

    async def open(self, page: Any, path: str) -> Any:
        response = await page.goto(self.base + path)
        assert response is not None and response.status == 200, (path, response)
        return page

    async def screenshot(self, page: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        # A sticky header would be drawn mid-page in a full-page shot of a scrolled page.
        await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot(path=str(path), full_page=True)
        return path

    async def check_accessibility(self, page: Any) -> None:
        """Labels on every input, lang, landmarks, and contrast of the visible text."""
        report = await page.evaluate(ACCESSIBILITY_SCRIPT)
        assert report["lang"] == "zh-CN", report
        assert report["hasMain"] and report["hasHeader"], report
        assert report["unlabelled"] == [], report["unlabelled"]
        assert report["lowContrast"] == [], report["lowContrast"]
        assert report["checkedText"] > 0, report

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


# Runs in the page: a rough WCAG check. Contrast uses the nearest opaque background up the
# tree (no images, no opacity), 4.5:1 for body text and 3:1 for large text (>= 24px, or
# >= 18.66px bold). Disabled controls are exempt, as in WCAG.
ACCESSIBILITY_SCRIPT = """
() => {
  const parse = (c) => { const m = c.match(/[\\d.]+/g).map(Number);
    return { r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1 }; };
  const lum = ({ r, g, b }) => { const f = (v) => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = (el) => {
    for (let n = el; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c.a >= 0.99) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const visible = (el) => { const s = getComputedStyle(el); const r = el.getBoundingClientRect();
    return s.visibility !== 'hidden' && s.display !== 'none' && r.width > 0 && r.height > 0; };
  const lowContrast = []; let checkedText = 0;
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !visible(el) || el.closest('[disabled]')) continue;
    if (el.classList.contains('skip-link')) continue;
    const s = getComputedStyle(el);
    const fg = lum(parse(s.color)); const bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(s.fontSize); const bold = Number(s.fontWeight) >= 700;
    const needed = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
    checkedText += 1;
    if (ratio < needed) lowContrast.push(
      `${el.tagName}#${el.id} "${el.textContent.trim().slice(0, 20)}" ${ratio.toFixed(2)}`);
  }
  const unlabelled = [];
  for (const input of document.querySelectorAll('input, select, textarea')) {
    if (['hidden', 'submit', 'button'].includes(input.type)) continue;
    const named = input.labels.length > 0 || input.getAttribute('aria-label')
      || input.getAttribute('aria-labelledby');
    if (!named) unlabelled.push(input.id || input.name || input.outerHTML.slice(0, 60));
  }
  for (const button of document.querySelectorAll('button, a[href]')) {
    if (!visible(button)) continue;
    if (!button.textContent.trim() && !button.getAttribute('aria-label'))
      unlabelled.push(button.outerHTML.slice(0, 60));
  }
  return { lang: document.documentElement.lang, lowContrast, unlabelled, checkedText,
           hasMain: !!document.querySelector('main'),
           hasHeader: !!document.querySelector('header') };
}
"""
