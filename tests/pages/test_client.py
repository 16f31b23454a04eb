"""kpay.js in the browser: money helpers, errors, back-off; static files and their types."""

import pytest

from kpay.core import metrics

# Imported in the page itself, so this is the code the pages run.
MONEY_CASES = """
async () => {
  const { formatFen, parseYuan, nextDelay } = await import('/static/js/kpay.js');
  const format = [0, 1, 99, 100, 1234, -5, -123456, 123456789, 9007199254740991]
    .map((fen) => formatFen(fen));
  const signed = [formatFen(5000, { sign: true }), formatFen(-1, { sign: true })];
  let refused = null;
  try { formatFen(1.5); } catch (e) { refused = e.name; }
  const parsed = ['12', '12.3', '12.34', ' ¥1,234.50 ', '0.01', '0.1', '19.99',
                  '12.345', '-1', 'abc', '', '1e3', '.5', '12.', '9999999999']
    .map((text) => parseYuan(text));
  const delays = [0, 1, 2, 3, 10, 40].map((attempt) => [
    nextDelay(attempt, { base: 500, max: 30000 }, () => 0),
    nextDelay(attempt, { base: 500, max: 30000 }, () => 0.999999)]);
  return { format, signed, refused, parsed, delays };
}
"""


@pytest.mark.gen_test(timeout=60)
async def test_money_helpers_and_backoff(pages):
    page = await pages.new_page()
    await pages.open(page, "/")
    result = await page.evaluate(MONEY_CASES)
    assert result["format"] == ["¥0.00", "¥0.01", "¥0.99", "¥1.00", "¥12.34", "-¥0.05",
                                "-¥1,234.56", "¥1,234,567.89", "¥90,071,992,547,409.91"]
    assert result["signed"] == ["+¥50.00", "-¥0.01"]
    assert result["refused"] == "TypeError"
    # 19.99 is the classic float trap (19.99 * 100 = 1998.9999...): parsed as strings.
    assert result["parsed"] == [1200, 1230, 1234, 123450, 1, 10, 1999,
                                None, None, None, None, None, None, None, None]
    # Equal jitter: between half and all of min(max, base * 2^attempt).
    assert result["delays"] == [[250, 500], [500, 1000], [1000, 2000], [2000, 4000],
                                [15000, 30000], [15000, 30000]]


ERRORS = """
async () => {
  const { KPay, errorFromEnvelope } = await import('/static/js/kpay.js');
  const kpay = new KPay();
  await kpay.devLogin('erin', 'student');
  const caught = [];
  for (const call of [
    () => kpay.post('/api/v1/orders', { item: { kind: 'wallet_topup', amount: 0 },
                                        channel: 'native' }),
    () => kpay.get('/api/v1/orders/nope'),
    () => { const anon = new KPay({ storage: null }); return anon.get('/api/v1/wallet'); },
  ]) {
    try { await call(); caught.push(null); }
    catch (e) { caught.push({ name: e.name, status: e.status, code: e.code, message: e.message,
                              details: e.details, isError: e instanceof Error }); }
  }
  const short = errorFromEnvelope(402, { error: { code: 'insufficient_balance',
    message: 'no', needed: 500, balance: 20 } });
  return { caught, needed: short.needed, status: short.status, code: short.code };
}
"""


@pytest.mark.gen_test(timeout=60)
async def test_api_errors_become_error_objects(pages):
    page = await pages.new_page()
    await pages.open(page, "/")
    result = await page.evaluate(ERRORS)
    bad_amount, missing, anonymous = result["caught"]
    assert bad_amount["isError"] and bad_amount["name"] == "ApiError"
    assert (bad_amount["status"], bad_amount["code"]) == (400, "invalid_amount")
    assert bad_amount["details"]["min"] == 1 and bad_amount["details"]["max"] == 500000
    assert (missing["status"], missing["code"]) == (404, "order_not_found")
    assert (anonymous["status"], anonymous["code"]) == (401, "unauthorized")
    assert (result["status"], result["code"], result["needed"]) == (
        402, "insufficient_balance", 500)


@pytest.mark.gen_test
async def test_pages_and_modules_are_served_with_their_types(api):
    expected = {
        "/": "text/html",
        "/static/index.html": "text/html",
        "/static/wallet.html": "text/html",
        "/static/css/kpay.css": "text/css",
        "/static/js/kpay.js": "javascript",
        "/static/js/socket.js": "javascript",
        "/static/js/pages/wallet.js": "javascript",
        "/static/vendor/uqr/uqr.js": "javascript",
    }
    for path, kind in expected.items():
        response = await api.http.fetch(api.base + path, raise_error=False)
        assert response.code == 200, path
        assert kind in response.headers["Content-Type"], (path, response.headers)
    status, _ = await api.get("/static/nope.js")
    assert status == 404


SOCKET_API = """
async () => {
  const { KPay } = await import('/static/js/kpay.js');
  const kpay = new KPay();
  await kpay.devLogin('sam', 'student');
  const socket = kpay.socket({ pingSeconds: 0.05 });
  const states = [];
  socket.on('state', ({ state }) => states.push(state));
  let offline = null;
  try { await socket.request('ping'); } catch (e) { offline = e.code; }
  const events = [];
  const confirmed = [];
  const got = new Promise((resolve) => socket.subscribe('user:sam', {
    onSubscribed: (detail) => confirmed.push(detail),
    onEvent: (frame) => { events.push(frame); resolve(); } }));
  const refused = new Promise((resolve) => socket.subscribe('user:bob', {
    onSubscribed: (detail) => confirmed.push(detail),
    onError: (error) => resolve(error.code) }));
  socket.connect();
  await new Promise((resolve) => {
    const off = socket.on('state', ({ state }) => {
      if (state === 'online') { off(); resolve(); }
    });
  });
  const pong = await socket.request('ping');
  await new Promise((resolve) => setTimeout(resolve, 300));  // several keepalive pings
  window.__kpayTest = { socket, got, events };
  return { offline, states, pong: pong.ok && typeof pong.time, refused: await refused,
           subscribed: [...socket.subscriptions.keys()], stillOnline: socket.state,
           confirmed };
}
"""


@pytest.mark.gen_test(timeout=60)
async def test_socket_client_api(pages, kpay_app):
    page = await pages.new_page()
    await pages.open(page, "/static/wallet.html")
    pings_before = metrics.MESSAGES_IN.labels("ping")._value.get()
    result = await page.evaluate(SOCKET_API)
    # One asked for, and keepalive pings every 50 ms for 300 ms.
    assert metrics.MESSAGES_IN.labels("ping")._value.get() - pings_before >= 4
    assert result["offline"] == "offline"  # before connect(): refused at once, not queued
    assert result["states"] == ["connecting", "online"]
    assert result["pong"] == "string"
    assert result["refused"] == "forbidden"
    assert result["subscribed"] == ["user:sam"]
    assert result["confirmed"] == [{"ch": "user:sam", "resumed": False}]  # not the refused
    assert result["stillOnline"] == "online"
    await kpay_app.publish("user:sam", "hello", {"n": 7})
    events = await page.evaluate(
        "async () => { await window.__kpayTest.got; return window.__kpayTest.events; }")
    assert [(e["ch"], e["type"], e["data"]) for e in events] == [("user:sam", "hello", {"n": 7})]
