"""Crash safety of a payout (docs/money.md, "Payouts"): a real server process dies at
``payouts.after_transfer`` (the provider took the transfer, the books do not know yet),
starts again, and the payout ends paid exactly once: the ``money.payouts`` job asks the
provider by the payout's ``out_bill_no`` before it would send anything again.

The server runs through a small driver that registers the fake payout provider
(``kpay.testproviders.FakePayoutProvider``) with its transfers kept in a file, so the
"outside system" outlives the crash as WeChat would.
"""

from __future__ import annotations

import json
import sys
import types

import pytest
from crash_servers import advance, check_books, in_flight, server_now

from kpay.core.clock import Clock
from kpay.core.money.ledger import Ledger

DRIVER = r"""
import asyncio, signal, sys
from kpay.core import config as config_module
from kpay.core.app import KPay, load_settings
from kpay.core.logs import configure_logging
from kpay.core.plugins import PluginManager
from kpay.testproviders import FakePayoutProvider, FakeProviderPlugin

config_path, state_path = sys.argv[1:3]

async def main():
    pm = PluginManager()
    pm.add(FakeProviderPlugin(FakePayoutProvider("fakepay", ("native",),
                                                 state_path=state_path)), "fakes")
    pm.check()
    settings, pm = load_settings(config_path, pm=pm)
    configure_logging(settings.logging.level)
    app = KPay(settings, pm, settings.mongodb.uri, var_dir=config_module.var_dir())
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await app.start()
    await stopping.wait()
    await app.stop()

asyncio.run(main())
"""


@pytest.mark.gen_test(timeout=120)
async def test_a_payout_killed_after_the_transfer_is_paid_once(deployments, tmp_path):
    state_path = tmp_path / "transfers.json"
    server = deployments([], command=[sys.executable, "-c", DRIVER, str(tmp_path / "kpay.toml"),
                                      str(state_path)],
                         # The test's earnings are booked on the wall clock: no hold.
                         extra_config="[payouts]\nhold_days = 0\n")
    await server.start("payouts.after_transfer:1")
    api = server.api()
    token = await api.login("con", "consultant")
    store = server.store()
    await store["users"].update_one({"_id": "con"}, {"$set": {"openid": "o-con"}})
    ledger = Ledger(types.SimpleNamespace(store=store, clock=Clock()))
    await ledger.post("test-earned:con", [("external:test", -5000), ("earnings:con", 5000)],
                      "earned")

    ask = api.request("POST", "/api/v1/payouts", {"amount": 1000}, token,
                      headers={"Idempotency-Key": "withdraw-1"})
    await in_flight(ask)
    await server.killed_at("payouts.after_transfer")
    sent = json.loads(state_path.read_text())
    assert list(sent["sends"].values()) == [1], sent
    [payout] = [p async for p in store["payouts"].find({})]
    assert payout["status"] == "sending", payout

    await server.start()
    # The client retries with its key: the same payout, not a second one.
    status, body = await api.request("POST", "/api/v1/payouts", {"amount": 1000}, token,
                                     headers={"Idempotency-Key": "withdraw-1"})
    assert status == 201 and body["payout"]["id"] == payout["_id"], body
    await advance(api, token, 61)  # the job asks the provider, then books its answer
    status, body = await api.get("/api/v1/payouts", token)
    assert [p["status"] for p in body["payouts"]] == ["waiting_confirmation"], body
    status, body = await api.post(f"/api/v1/dev/payouts/{payout['_id']}/confirm", token=token)
    assert status == 200 and body["payout"]["status"] == "succeeded", body
    await advance(api, token, 61)

    assert json.loads(state_path.read_text())["sends"] == {payout["out_bill_no"]: 1}
    found = await check_books(store, await server_now(api))
    assert found["earnings:con"] == 4000 and found["external:fakepay"] == 1000
    assert found["payouts:in_flight"] == 0
    keys = sorted([e["_id"] async for e in store["ledger"].find(
        {"_id": {"$regex": "^payout:"}}, {"_id": 1})])
    assert keys == [f"payout:{payout['_id']}:paid", f"payout:{payout['_id']}:reserve"]
