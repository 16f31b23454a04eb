"""A client that was away longer than the socket history reaches: the socket says
recovered: false and the REST replay fills the gap with the same seqs."""

import pytest


@pytest.fixture
def kpay_overrides():
    return {"plugins": {"enabled": ["live_qa"]}, "realtime": {"history_size": 3}}


@pytest.mark.gen_test
async def test_resume_beyond_the_socket_history_falls_back_to_the_replay(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0)
    student = await live.student("s1", room)
    channel = f"room:{room['id']}"
    host_ws = await api.socket(host)
    student_ws = await api.socket(student)
    assert (await student_ws.request("sub", ch=channel))["ok"]
    assert (await host_ws.request("pub", ch=channel, type="message", data={"text": "m0"}))["ok"]
    last_seen = (await student_ws.event("message"))["seq"]
    student_ws.close()  # the phone goes to sleep

    for n in range(1, 7):
        reply = await host_ws.request("pub", ch=channel, type="message", data={"text": f"m{n}"})
        assert reply["ok"]

    back = await api.socket(student)
    reply = await back.request("sub", ch=channel, since=last_seen)
    assert reply["ok"] is True and reply["recovered"] is False
    status, page = await api.get(f"/api/v1/rooms/{room['id']}/messages?since={last_seen}",
                                 student)
    assert status == 200 and page["more"] is False
    assert [m["data"]["text"] for m in page["messages"]] == [f"m{n}" for n in range(1, 7)]
    # Live events keep coming on the resumed socket, continuing the replay's seqs.
    assert (await host_ws.request("pub", ch=channel, type="message", data={"text": "m7"}))["ok"]
    while True:
        event = await back.event("message")
        if event["data"]["text"] == "m7":
            break
    assert event["seq"] == page["next_since"] + 1
