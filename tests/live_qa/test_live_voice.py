"""Voice answers (docs/live_qa.md "Voice answers"): the host answers with an uploaded
recording; members get a signed URL that serves the audio (with ranges), others do not;
media that is not the host's answer recording is refused."""

from __future__ import annotations

from typing import Any

import pytest

from kpay.testmedia import upload, wav_bytes


@pytest.fixture
def kpay_overrides(tmp_path: Any) -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": ["live_qa"]}, "media": {"path": str(tmp_path / "media")}}


async def fetch(api: Any, url: str, headers: dict[str, str] | None = None) -> Any:
    return await api.http.fetch(api.base + url, raise_error=False, follow_redirects=False,
                                headers=headers or {})


@pytest.mark.gen_test(timeout=60)
async def test_a_voice_answer_plays_for_members_only(api, live, kpay_app):
    host = await live.host()
    room = await live.room(host, ticket_price=100, question_min_price=300)
    alice = await live.student("alice", room, funds=5000)
    outsider = await live.student("olga", funds=0)
    await live.ask_paid(alice, room, "怎么准备群面", 500)
    _, listed = await api.get(f"/api/v1/rooms/{room['id']}/questions", alice)
    question_id = listed["questions"][0]["id"]
    recording = await upload(api, host, "audio", "answer", wav_bytes(3.0))
    ws = await api.socket(alice)
    assert (await ws.request("sub", ch=f"room:{room['id']}"))["ok"]

    path = f"/api/v1/rooms/{room['id']}/questions/{question_id}"
    status, body = await api.post(path + "/answer", {"audio_media_id": recording["id"]}, host)
    assert status == 200, body
    answer = body["question"]["answer"]
    assert answer["audio_media_id"] == recording["id"]
    assert answer["duration_seconds"] == pytest.approx(3.0, abs=0.1)
    event = await ws.event("answer")
    assert event["data"]["audio_media_id"] == recording["id"]
    assert "url" not in event["data"]  # the room gets no URL: each member asks for theirs

    status, audio = await api.get(path + "/audio", alice)
    assert status == 200, audio
    assert audio["duration_seconds"] == pytest.approx(3.0, abs=0.1)
    served = await fetch(api, audio["url"], {"Range": "bytes=0-99"})
    assert served.code == 206 and len(served.body) == 100
    # The host may fetch it too; someone without a ticket may not.
    assert (await api.get(path + "/audio", host))[0] == 200
    status, body = await api.get(path + "/audio", outsider)
    assert (status, body["error"]["code"]) == (403, "no_ticket")
    # Removed from the room, the URL minted before stops working.
    status, body = await api.request("DELETE", f"/api/v1/rooms/{room['id']}/members/alice",
                                     token=host)
    assert status == 200, body
    assert (await fetch(api, audio["url"])).code == 403
    told = {n["kind"]: n for n in (await api.get("/api/v1/notifications", alice))[1][
        "notifications"]}
    assert told["question_answered"]["title"] == "你的提问收到了语音回答"


@pytest.mark.gen_test(timeout=60)
async def test_only_the_hosts_answer_recordings_are_accepted(api, live, kpay_app):
    host = await live.host()
    room = await live.room(host, ticket_price=0, question_min_price=300)
    alice = await live.student("alice", room, funds=5000)
    await live.ask_paid(alice, room, "第一问", 500)
    _, listed = await api.get(f"/api/v1/rooms/{room['id']}/questions", alice)
    path = f"/api/v1/rooms/{room['id']}/questions/{listed['questions'][0]['id']}"
    theirs = await upload(api, alice, "audio", "answer", wav_bytes(1.0))
    lesson_audio = await upload(api, host, "audio", "lesson", wav_bytes(1.0))
    for media_id in (theirs["id"], lesson_audio["id"], "m" + "0" * 20, "x" * 64):
        status, body = await api.post(path + "/answer", {"audio_media_id": media_id}, host)
        assert (status, body["error"]["code"]) == (400, "invalid_media"), media_id
    status, body = await api.post(path + "/answer", {"audio_media_id": "x" * 65}, host)
    assert status == 400
    status, body = await api.get(path + "/audio", alice)
    assert (status, body["error"]["code"]) == (404, "no_voice_answer")
    # The student's own recording is not theirs to answer with either.
    status, body = await api.post(path + "/answer", {"audio_media_id": theirs["id"]}, alice)
    assert status == 403
