"""A deployment picks its feature set: only the selected plugins are imported, and the
others' routes, channels and order kinds are absent from the running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILT_INS = {"wechat_pay", "live_qa", "consult_billing", "course_drip"}

# Starts a real app (database, port) with the given selection, then reports what it
# serves and which plugin modules were imported in this fresh process.
PROBE = """
import asyncio, json, sys
from kpay.core.app import KPay, load_settings
from kpay.testing import drop_database

selection, uri, database = json.loads(sys.argv[1])
settings, pm = load_settings(None, overrides={
    "dev": {"enabled": True}, "scheduler": {"enabled": False},
    "auth": {"secret": "feature-set-test-secret-" + "x" * 16},
    "mongodb": {"uri": uri, "database": database},
    "server": {"host": "127.0.0.1", "port": 0}, "plugins": {"enabled": selection}})

async def main():
    app = KPay(settings, pm, uri, var_dir=sys.argv[2])
    await app.start()
    try:
        return {"loaded": sorted(p["name"] for p in pm.describe()),
                "routes": sorted(r.path for r in app.routes),
                "channels": sorted(app.channels.rules),
                "kinds": sorted(app.money.orders.kinds),
                "pay_channels": sorted(app.money.orders.channels),
                "modules": sorted({m.split(".")[1] for m in sys.modules
                                   if m.startswith("plugins.")})}
    finally:
        await app.stop()
        await drop_database(uri, database)

print(json.dumps(asyncio.run(main())))
"""


def probe(selection: list[str], mongo_uri: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPAY_")}
    argument = json.dumps([selection, mongo_uri, "t_fs_" + uuid.uuid4().hex[:12]])
    result = subprocess.run([sys.executable, "-c", PROBE, argument, str(tmp_path)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_course_drip_and_wechat_pay_only(mongo_uri, tmp_path):
    found = probe(["course_drip", "wechat_pay"], mongo_uri, tmp_path)
    assert found["loaded"] == ["course_drip", "wechat_pay"]
    assert found["modules"] == ["course_drip", "wechat_pay"]
    assert "/api/v1/courses" in found["routes"]
    assert "/api/v1/pay/wechat/notify" in found["routes"]
    assert not [r for r in found["routes"] if r.startswith(("/api/v1/rooms",
                                                            "/api/v1/consult"))]
    assert found["channels"] == ["user"]
    assert found["kinds"] == ["course", "wallet_topup"]
    assert "jsapi" in found["pay_channels"]


def test_live_qa_only(mongo_uri, tmp_path):
    found = probe(["live_qa"], mongo_uri, tmp_path)
    assert found["loaded"] == found["modules"] == ["live_qa"]
    assert "/api/v1/rooms" in found["routes"]
    assert not [r for r in found["routes"] if r.startswith(("/api/v1/courses",
                                                            "/api/v1/consult",
                                                            "/api/v1/pay/wechat",
                                                            "/api/v1/wechat"))]
    assert found["channels"] == ["room", "user"]
    assert found["kinds"] == ["live_question", "live_ticket", "wallet_topup"]
    assert found["pay_channels"] == ["wallet"]


def test_no_plugins_is_the_bare_core(mongo_uri, tmp_path):
    found = probe([], mongo_uri, tmp_path)
    assert found["loaded"] == found["modules"] == []
    assert found["channels"] == ["user"] and found["kinds"] == ["wallet_topup"]


class TestLiveQaOnlyOverHttp:
    """The same selection seen by a client: the others' features answer as unknown."""

    @pytest.fixture
    def kpay_overrides(self):
        return {"plugins": {"enabled": ["live_qa"]}}

    @pytest.mark.gen_test
    async def test_other_features_are_absent(self, api, student):
        assert (await student.get("/api/v1/courses"))[0] == 404
        assert (await student.get("/api/v1/consultants"))[0] == 404
        status, body = await student.post("/api/v1/orders", {
            "item": {"kind": "course", "course_id": "c1"}, "channel": "wallet"})
        assert status == 400 and body["error"]["code"] == "unknown_kind"
        ws = await student.socket()
        reply = await ws.request("sub", ch="consult:x")
        assert reply["ok"] is False and reply["error"]["code"] == "unknown_channel"
        assert (await student.get("/api/v1/rooms"))[0] == 200
