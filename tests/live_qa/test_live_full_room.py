"""A whole room against the real server and real sockets: a host and 55 students,
tickets by wallet and by scan (dev simulator), paid and free questions, 同问, answers,
moderation, the end with refunds, the replay, and books that reconcile."""

import asyncio

import pytest

from kpay.core.money import accounts
from kpay.testing import assert_books_balanced

STUDENTS = 55
BY_SCAN = 5  # students paying their ticket through the provider channel
TICKET, MIN_BOUNTY = 500, 200


async def drain_until(ws, op):
    while True:
        frame = await ws.receive()
        assert frame is not None, "socket closed"
        if frame.get("op") == op:
            return frame
        if frame.get("op") == "event":
            ws.events.append(frame)


@pytest.mark.gen_test(timeout=120)
async def test_full_live_room(api, live, kpay_app):
    host = await live.host()
    room = await live.room(host, start=False, ticket_price=TICKET,
                           question_min_price=MIN_BOUNTY, capacity=60, chat=True)
    rid, channel = room["id"], f"room:{room['id']}"

    # -- tickets: 50 by wallet, 5 by scan through the dev simulator --------------------
    ids = [f"stu{n:02d}" for n in range(STUDENTS)]
    tokens = {}
    for n, user in enumerate(ids):
        if n < STUDENTS - BY_SCAN:
            tokens[user] = await live.student(user, room, funds=3000)
            continue
        tokens[user] = await live.student(user)
        status, body = await live.order(tokens[user], {"kind": "live_ticket", "room_id": rid},
                                        channel="native")
        assert status == 201 and body["order"]["status"] == "pending"
        status, paid = await api.post(f"/api/v1/dev/orders/{body['order']['id']}/pay",
                                      token=tokens[user])
        assert status == 200 and paid["order"]["status"] == "fulfilled"
    status, body = await api.get(f"/api/v1/rooms/{rid}", host)
    assert body["room"]["sold"] == STUDENTS

    # -- everyone joins over the socket, before the start ----------------------------
    host_ws = await api.socket(host)
    assert (await host_ws.request("sub", ch=channel))["ok"]
    sockets = {}
    for user in ids:
        ws = await api.socket(tokens[user])
        assert (await ws.request("sub", ch=channel))["ok"], user
        assert (await ws.request("sub", ch=f"user:{user}"))["ok"], user
        sockets[user] = ws
    outsider = await api.socket(await live.student("outsider", funds=3000))
    assert (await outsider.request("sub", ch=channel))["ok"] is False

    status, _ = await api.post(f"/api/v1/rooms/{rid}/start", token=host)
    assert status == 200
    for ws in sockets.values():
        assert (await ws.event("room_state"))["data"]["state"] == "live"

    # -- the host speaks: text, a slide, a voice clip ----------------------------------
    said = [{"text": "欢迎来到直播间"}, {"image_url": "https://cdn.example.com/s1.png"},
            {"audio_url": "https://cdn.example.com/v1.mp3", "duration": 30}]
    for data in said:
        reply = await host_ws.request("pub", ch=channel, type="message", data=data)
        assert reply["ok"], reply
    for ws in sockets.values():
        got = [await ws.event("message") for _ in said]
        assert [g["data"].get("text") or g["data"].get("image_url") or g["data"]["audio_url"]
                for g in got] == ["欢迎来到直播间", said[1]["image_url"], said[2]["audio_url"]]

    # -- questions: 12 paid (10 by wallet, 2 by scan), 10 free, 同问 ---------------------
    paid = {}
    for n in range(10):
        user = ids[n]
        status, body = await live.ask_paid(tokens[user], room, f"付费问题 {n}",
                                           MIN_BOUNTY + 100 * n)
        assert status == 201, body
        paid[user] = MIN_BOUNTY + 100 * n
    for user in ids[STUDENTS - 2:]:  # scan payers ask by scan too
        status, body = await live.order(tokens[user], {
            "kind": "live_question", "room_id": rid, "text": f"扫码问题 {user}",
            "bounty": 250}, "native")
        assert status == 201
        status, _ = await api.post(f"/api/v1/dev/orders/{body['order']['id']}/pay",
                                   token=tokens[user])
        assert status == 200
        paid[user] = 250
    for n in range(10, 20):
        status, body = await api.post(f"/api/v1/rooms/{rid}/questions",
                                      {"text": f"免费问题 {n}"}, tokens[ids[n]])
        assert status == 201, body
    status, body = await live.ask_paid(tokens[ids[20]], room, "太便宜", MIN_BOUNTY - 1)
    assert status == 400 and body["error"]["code"] == "bounty_too_low"

    status, queue = await api.get(f"/api/v1/rooms/{rid}/questions", host)
    questions = queue["questions"]
    assert len(questions) == 22
    bounties = [q["bounty"] for q in questions]
    assert bounties == sorted(bounties, reverse=True) and bounties[-10:] == [0] * 10
    free_first = questions[12]
    assert free_first["text"] == "免费问题 10"
    upvote = f"/api/v1/rooms/{rid}/questions/{free_first['id']}/upvote"
    votes = await asyncio.gather(*(api.post(upvote, token=tokens[u]) for u in ids[21:41]))
    assert all(status == 200 for status, _ in votes)
    status, again = await api.post(upvote, token=tokens[ids[21]])
    assert status == 409 and again["error"]["code"] == "already_upvoted"

    # -- answers: the five richest paid questions and three free ones -------------------
    answered = questions[:5] + questions[12:15]
    for question in answered:
        status, body = await api.post(f"/api/v1/rooms/{rid}/questions/{question['id']}/answer",
                                      {"text": f"回答：{question['text']}"}, host)
        assert status == 200, body
    status, twice = await api.post(f"/api/v1/rooms/{rid}/questions/{answered[0]['id']}/answer",
                                   {"text": "again"}, host)
    assert status == 409 and twice["error"]["code"] == "already_answered"
    watcher = sockets[ids[30]]
    seen = [(await watcher.event("answer"))["data"]["question_id"] for _ in answered]
    assert seen == [q["id"] for q in answered]

    # -- moderation: chat, a removed message, a muted user, a removed user --------------
    spammer, loud = ids[44], ids[45]
    assert (await sockets[ids[43]].request("pub", ch=channel, type="message",
                                           data={"text": "老师讲得好"}))["ok"]
    assert (await sockets[spammer].request("pub", ch=channel, type="message",
                                           data={"text": "加我微信 spam"}))["ok"]
    spam_seq = None
    while spam_seq is None:
        event = await host_ws.event("message")
        if event["data"]["from"] == spammer:
            spam_seq = event["seq"]
    status, _ = await api.request("DELETE", f"/api/v1/rooms/{rid}/messages/{spam_seq}",
                                  token=host)
    assert status == 200
    assert (await watcher.event("message_removed"))["data"] == {"seq": spam_seq}
    status, _ = await api.post(f"/api/v1/rooms/{rid}/members/{loud}/mute", token=host)
    assert status == 200
    muted = await sockets[loud].request("pub", ch=channel, type="message", data={"text": "!"})
    assert muted["ok"] is False and muted["error"]["code"] == "muted"
    status, _ = await api.request("DELETE", f"/api/v1/rooms/{rid}/members/{spammer}",
                                  token=host)
    assert status == 200
    kicked = await drain_until(sockets[spammer], "unsubscribed")
    assert kicked["reason"] == "removed_by_host"
    assert (await sockets[spammer].request("sub", ch=channel))["ok"] is False

    # -- the end: seven unanswered paid questions go back to the wallets ---------------
    escrow = accounts.escrow("live_qa")
    answered_paid = sum(q["bounty"] for q in questions[:5])
    unanswered = {u: b for u, b in paid.items()
                  if b not in [q["bounty"] for q in questions[:5]]}
    assert await live.balance(escrow) == sum(paid.values()) - answered_paid
    status, ended = await api.post(f"/api/v1/rooms/{rid}/end", token=host)
    assert status == 200 and ended["refunded"] == 7 == len(unanswered)
    status, twice = await api.post(f"/api/v1/rooms/{rid}/end", token=host)
    assert status == 409
    assert await live.balance(escrow) == 0
    for user, bounty in unanswered.items():
        notice = await sockets[user].event("question_refunded")
        assert notice["data"]["amount"] == bounty and notice["data"]["room_id"] == rid
    for n in range(10):
        user = ids[n]
        expected = 3000 - TICKET - (0 if user in unanswered else paid[user])
        assert (await live.wallet(tokens[user]))["balance"] == expected, user
    for user in ids[STUDENTS - 2:]:
        # Paid by scan, refunded to the wallet.
        assert (await live.wallet(tokens[user]))["balance"] == 250

    # Host earnings: 80 % of every ticket and of every answered bounty.
    tickets_earned = STUDENTS * (TICKET - TICKET * 2000 // 10_000)
    bounty_earned = sum(b - b * 2000 // 10_000 for b in (q["bounty"] for q in questions[:5]))
    assert await live.balance(accounts.earnings("host")) == tickets_earned + bounty_earned

    # -- the replay: what the socket saw, the whole history, in order -------------------
    reader = tokens[ids[30]]
    history, since = [], 0
    while True:
        status, page = await api.get(f"/api/v1/rooms/{rid}/messages?since={since}&limit=7",
                                     reader)
        assert status == 200
        history += page["messages"]
        since = page["next_since"]
        if not page["more"]:
            break
    kinds = [m["type"] for m in history]
    assert kinds[0] == "room_state" and history[-1]["data"]["state"] == "ended"
    assert kinds.count("message") == 5 and kinds.count("question") == 22
    assert kinds.count("answer") == 8 and kinds.count("message_removed") == 1
    removed = next(m for m in history if m["seq"] == spam_seq)
    assert removed["data"] == {"removed": True, "from": spammer}
    seqs = [m["seq"] for m in history]
    assert seqs == sorted(seqs)
    # Every kept event the watcher's socket got is in the replay under the same seq.
    while True:
        try:
            watcher.events.append(await watcher.receive(timeout=0.2))
        except TimeoutError:
            break
    live_seen = {e["seq"]: e["type"] for e in watcher.events
                 if e and e.get("op") == "event" and e["ch"] == channel}
    replayed = {m["seq"]: m["type"] for m in history}
    for seq, type_ in live_seen.items():
        if type_ not in ("presence", "upvote"):
            assert replayed.get(seq) == type_, (seq, type_)
    status, body = await api.get(f"/api/v1/rooms/{rid}/messages", tokens[spammer])
    assert status == 403

    await assert_books_balanced(live.app)
    for ws in [host_ws, outsider, *sockets.values()]:
        ws.close()
