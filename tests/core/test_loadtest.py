"""bench/loadtest.py against a test server (docs/performance.md, "Load test"): a short
run with ten students does every action of the mix without an error, and a route that
fails shows in the report as errors with their code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import loadtest
from loadtest_report import problems, render

from kpay.core.users import issue_token

#: Every action the report names: the mix, a consultation's steps, the hosts' messages,
#: the students' socket connects.
ACTIONS = sorted({*loadtest.WEIGHTS, "consult_request", "consult_accept", "consult_end",
                  "host_message", "connect"} - {"consult"})
#: A flatter mix, so that five seconds see every action: the room's actions, which wait
#: for a ticket and a join first, are a little more likely than the rest.
FLAT_MIX = {**dict.fromkeys(loadtest.WEIGHTS, 1),
            **dict.fromkeys(("buy_ticket", "join_room", "chat", "ask"), 3)}


@pytest.fixture
def kpay_overrides(request: pytest.FixtureRequest, fake_wechat: Any) -> dict[str, Any]:
    # The per-user limits as in production (or as a test's parameter changes them); the
    # login limit is per client IP, and every user of the load test logs in from
    # 127.0.0.1 (bench/loadtest_server.py raises it too).
    limits = {"enabled": True, "login_burst": 100, **getattr(request, "param", {})}
    return {"wechat_pay": fake_wechat.settings(), "limits": limits}


async def short_run(app: Any) -> dict[str, Any]:
    report = await loadtest.run_load(f"http://127.0.0.1:{app.port}", users=10, duration=5,
                                     think=0.2, consult_seconds=0.5, seed=18,
                                     weights=FLAT_MIX)
    print(render(report))
    return report


@pytest.mark.gen_test(timeout=120)
async def test_a_short_load_test_does_every_action_without_errors(kpay_app):
    report = await short_run(kpay_app)
    assert problems(report, ACTIONS) == []
    assert sorted(report["actions"]) == ACTIONS
    assert report["users"] == 10 and report["crashed_users"] == 0
    # Chat reaches the others in the room over their sockets, with its lag measured.
    assert report["events"]["by_type"]["message"] > report["actions"]["chat"]["ok"]
    assert report["events"]["chat_lag_ms"]["p95"] is not None


@pytest.mark.gen_test(timeout=120)
async def test_a_route_that_fails_shows_as_errors_with_its_code(kpay_app, monkeypatch):
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("search is broken")

    monkeypatch.setattr(kpay_app.search, "find", broken)
    report = await short_run(kpay_app)
    search = report["actions"]["search"]
    assert search["ok"] == 0 and search["errors"] == search["count"] > 0
    assert search["top_errors"] == {"500 internal_error": search["count"]}
    assert report["total"]["errors"] >= search["errors"]
    assert any(line.startswith("search:") for line in problems(report, ACTIONS))


@pytest.mark.parametrize("kpay_overrides", [{"orders_burst": 2, "orders_per_second": 0.05}],
                         indirect=True)
@pytest.mark.gen_test(timeout=120)
async def test_rate_limited_answers_are_counted_apart_from_errors(kpay_app):
    # The set-up's top-up takes one order of the two; the mix's second top-up is a 429.
    report = await loadtest.run_load(f"http://127.0.0.1:{kpay_app.port}", users=4,
                                     duration=3, think=0.1, seed=18,
                                     weights={"topup": 1, "search": 1})
    topup = report["actions"]["topup"]
    assert topup["rate_limited"] > 0 and topup["ok"] > 0
    assert report["total"]["errors"] == 0 and problems(report, ["topup", "search"]) == []
    assert "429: refused by a per-user rate limit" in render(report)


WITHOUT_DEV = {"dev": {"enabled": False}, "plugins": {"enabled": ["live_qa"]}}


@pytest.mark.parametrize("kpay_overrides", [WITHOUT_DEV])
@pytest.mark.gen_test(timeout=60)
async def test_a_deployment_without_dev_mode_is_refused_unless_given_tokens(kpay_app):
    with pytest.raises(SystemExit, match="not in dev mode"):
        await loadtest.run_load(f"http://127.0.0.1:{kpay_app.port}", users=2, duration=1)


@pytest.mark.parametrize("kpay_overrides", [WITHOUT_DEV])
@pytest.mark.gen_test(timeout=60)
async def test_with_tokens_it_uses_the_routes_the_deployment_has(kpay_app):
    tokens: dict[str, list[str]] = {"students": [], "consultants": []}
    for kind, role, count in (("students", "student", 3), ("consultants", "consultant", 1)):
        for n in range(count):
            user = await kpay_app.users.sign_in(f"{role}{n}", role, None)
            tokens[kind].append(issue_token(kpay_app.tokens, user))
    # Only live_qa: no courses, no consultations, no dev payments; wallets are empty,
    # so tickets are left out of this mix too.
    report = await loadtest.run_load(f"http://127.0.0.1:{kpay_app.port}", users=3,
                                     duration=2, think=0.2, tokens=tokens, seed=18,
                                     weights={**FLAT_MIX, "buy_ticket": 0})
    print(render(report))
    assert problems(report, ["connect", "home", "search", "host_message"]) == []
    assert not {"topup", "buy_course", "lessons", "consult_request"} & set(report["actions"])
