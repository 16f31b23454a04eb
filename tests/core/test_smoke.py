import pytest


@pytest.mark.gen_test
async def test_health_and_login(api):
    status, body = await api.get("/healthz")
    assert status == 200 and body["database"] == "up"
    token = await api.login("alice", "student")
    status, me = await api.get("/api/v1/me", token=token)
    assert status == 200 and me == {"id": "alice", "role": "student", "name": "alice",
                                    "avatar_url": None}


@pytest.mark.gen_test
async def test_socket_user_channel(api, kpay_app):
    token = await api.login("alice")
    ws = await api.socket(token)
    reply = await ws.request("sub", ch="user:alice")
    assert reply["ok"] is True
    await kpay_app.publish("user:alice", "hello", {"n": 1})
    event = await ws.event("hello")
    assert event["data"] == {"n": 1} and event["ch"] == "user:alice"
    denied = await ws.request("sub", ch="user:bob")
    assert denied["ok"] is False and denied["error"]["code"] == "forbidden"
