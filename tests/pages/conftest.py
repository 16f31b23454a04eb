"""Browser tests of the H5 pages: Playwright driving Debian's chromium against the real app.

How it runs, and why:

- Playwright's ASYNC API inside ``@pytest.mark.gen_test`` tests. The app under test
  (``kpay_app``) serves on the test's asyncio loop; Playwright's async API runs on that
  same loop, so one test awaits the browser and pokes the server (``kpay_app.publish``,
  closing sockets) with no threads and no cross-loop calls. A sync-API browser in a thread
  would need locks around every server poke; this needs none.
- pytest-tornado gives every test a new loop and a Playwright connection is bound to the
  loop it was started on, so each test starts its own Playwright and chromium (about half a
  second). The ``browser`` fixture starts them with ``io_loop.run_sync`` before the test,
  as ``kpay_app`` starts the server.
- The browser is Debian's ``/usr/bin/chromium`` (``apt-get install chromium
  fonts-wqy-microhei``; .ci/run does it): Playwright's own browser download cannot work
  here. Override with ``KPAY_TEST_CHROMIUM``. Without the binary the tests are skipped.
- WeChat Pay is stood in for by ``StandInPlugin``'s fake provider, serving the
  ``native`` and ``jsapi`` channels (not ``mweb``, so the pages' channel fallback is
  exercised). Orders are paid with the dev simulator route, the path a verified notify
  takes. ``plugins.enabled`` is empty: these tests cover the base pages only.

Every page a test opens through ``PageKit`` records console errors and uncaught exceptions;
the test fails on any (a ``Failed to load resource`` for a 4xx from ``/api/`` is allowed:
that is an error response the page handles and shows). ``PageKit.check_accessibility``
checks labels, landmarks, ``lang`` and text contrast. Screenshots go to
``test-output/screenshots/`` at phone size (390x844).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pagekit import CHROMIUM, CHROMIUM_ARGS, STATIC, PageKit, StandInPlugin
from playwright.async_api import expect

# The browser, the app and its database share two cores with whatever else runs:
# give page assertions room to wait, so a busy machine is not read as a failure.
expect.set_options(timeout=15_000)


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": []}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("standin_wechat_pay", StandInPlugin())]


@pytest.fixture
def browser_args() -> list[str]:
    """Chromium's flags: a module overrides this fixture to add its own (audio that plays
    without a tap, a fake microphone)."""
    return CHROMIUM_ARGS


@pytest.fixture
def browser(io_loop: Any, browser_args: list[str]) -> Any:
    """A headless chromium on the test's loop (use inside gen_test tests)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    playwright = io_loop.run_sync(lambda: async_playwright().start())
    try:
        launched = io_loop.run_sync(lambda: playwright.chromium.launch(
            executable_path=CHROMIUM, args=browser_args))
    except BaseException:
        io_loop.run_sync(playwright.stop)
        raise
    yield launched
    io_loop.run_sync(launched.close)
    io_loop.run_sync(playwright.stop)


@pytest.fixture
def pages(browser: Any, kpay_app: Any, io_loop: Any) -> Any:
    """``PageKit`` for the running app; fails the test on console errors of its pages."""
    kit = PageKit(browser, f"http://127.0.0.1:{kpay_app.port}")
    yield kit
    io_loop.run_sync(kit.close)
    assert kit.problems == [], "\n".join(kit.problems)
