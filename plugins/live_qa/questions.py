"""Questions: free ones posted straight in, paid ones opened when their order is paid;
the host's queue, upvotes ("同问") and answers.

Statuses: ``pending`` (paid order not paid yet) -> ``open`` -> ``answered``;
``open`` -> ``refunding`` -> ``refunded`` when the room ends unanswered;
``pending`` -> ``closed`` when the order expires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from kpay.core.errors import BadRequest, Conflict, Forbidden, NotFound
from kpay.core.money import accounts
from plugins.live_qa import history, rooms
from plugins.live_qa.settings import settings_of
from plugins.live_qa.store import ESCROW_NAME, QUESTIONS, ROOMS, UPVOTES

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from kpay.core.auth import User


def clean_text(app: KPay, text: Any, field: str = "text") -> str:
    """The question or message text, trimmed; 400 when empty or too long."""
    if not isinstance(text, str):
        raise BadRequest(f"{field} must be a string", code="invalid_field", field=field)
    text = text.strip()
    limit = settings_of(app).max_text_chars
    if not text:
        raise BadRequest(f"{field} must not be empty", code="invalid_field", field=field)
    if len(text) > limit:
        raise BadRequest(f"{field} is longer than {limit} characters", code="text_too_long",
                         field=field, max=limit)
    return text


def id_for_order(order_id: str) -> str:
    # Derived from the order, so a replayed fulfilment finds the same question.
    return "q" + order_id


def public(question: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": question["_id"], "room_id": question["room_id"],
        "asker_id": question["asker_id"], "text": question["text"],
        "bounty": question["bounty"], "paid": question["paid"],
        "status": question["status"], "upvotes": question.get("upvotes", 0),
        "created_at": question["created_at"], "answer": question.get("answer"),
    }


def new_paid(app: KPay, order: dict[str, Any]) -> dict[str, Any]:
    item = order["item"]
    return {"_id": id_for_order(order["_id"]), "room_id": item["room_id"],
            "asker_id": order["user_id"], "text": item["text"], "bounty": item["bounty"],
            "paid": True, "order_id": order["_id"], "status": "pending", "upvotes": 0,
            "created_at": app.clock.now()}


async def get(app: KPay, room_id: str, question_id: str) -> dict[str, Any]:
    question = await app.store[QUESTIONS].find_one({"_id": question_id, "room_id": room_id})
    if question is None:
        raise NotFound(f"no question {question_id} in room {room_id}",
                       code="question_not_found")
    return question


async def require_asker(app: KPay, room: dict[str, Any], user: User) -> None:
    """``user`` may ask in ``room`` now (free or paid): it is live, they hold a ticket,
    they are not the host and not muted."""
    rooms.require_live(room)
    asker = await rooms.require_member(app, room, user)
    if asker.is_host:
        raise Forbidden("the host answers questions, not asks them", code="host_cannot_ask")
    if asker.muted:
        raise Forbidden("you are muted in this room", code="muted")


async def ask_free(app: KPay, room: dict[str, Any], user: User, text: Any) -> dict[str, Any]:
    text = clean_text(app, text)
    await require_asker(app, room, user)
    if not room["free_questions"]:
        raise Forbidden("this room takes paid questions only", code="free_questions_off",
                        min=max(1, room["question_min_price"]))
    question = {"_id": rooms.new_id("q"), "room_id": room["_id"], "asker_id": user.id,
                "text": text, "bounty": 0, "paid": False, "status": "open", "upvotes": 0,
                "created_at": app.clock.now()}
    await app.store[QUESTIONS].insert_one(question)
    await history.publish(app, room["_id"], "question", public(question))
    return question


async def open_paid(app: KPay, order: dict[str, Any]) -> dict[str, Any]:
    """Fulfil a paid question order: pending -> open, broadcast once."""
    opened = await app.store[QUESTIONS].find_one_and_update(
        {"_id": id_for_order(order["_id"]), "status": "pending"},
        {"$set": {"status": "open", "opened_at": app.clock.now()}},
        return_document=ReturnDocument.AFTER)
    if opened is None:
        # A replayed fulfilment: it was opened (and broadcast) before.
        return await app.store[QUESTIONS].find_one({"_id": id_for_order(order["_id"])})
    await history.publish(app, opened["room_id"], "question", public(opened))
    return opened


async def queue(app: KPay, room_id: str, statuses: tuple[str, ...],
                limit: int) -> list[dict[str, Any]]:
    """Paid first by bounty (highest first), then oldest first; free ones have bounty 0."""
    cursor = app.store[QUESTIONS].find(
        {"room_id": room_id, "status": {"$in": list(statuses)}}
    ).sort([("bounty", -1), ("created_at", 1), ("_id", 1)]).limit(limit)
    return [public(q) async for q in cursor]


async def upvote(app: KPay, room: dict[str, Any], user: User,
                 question_id: str) -> dict[str, Any]:
    """同问: once per user and question, while the room is live."""
    rooms.require_live(room)
    voter = await rooms.require_member(app, room, user)
    question = await get(app, room["_id"], question_id)
    if question["status"] != "open":
        raise Conflict("only open questions take upvotes", code="question_not_open")
    if question["asker_id"] == voter.user_id:
        raise Conflict("you asked this question", code="own_question")

    async def write(session: Any) -> dict[str, Any]:
        await app.store[UPVOTES].insert_one(
            {"_id": f"{question_id}:{user.id}", "question_id": question_id,
             "user_id": user.id, "at": app.clock.now()}, session=session)
        return await app.store[QUESTIONS].find_one_and_update(
            {"_id": question_id}, {"$inc": {"upvotes": 1}}, session=session,
            return_document=ReturnDocument.AFTER)

    try:
        updated = await app.store.transaction(write)
    except DuplicateKeyError:
        raise Conflict("you already upvoted this question", code="already_upvoted") from None
    # Counts change often; they are broadcast but not kept in the replay.
    await history.publish(app, room["_id"], "upvote",
                          {"question_id": question_id, "upvotes": updated["upvotes"]},
                          persist=False)
    return updated


async def answer(app: KPay, room: dict[str, Any], user: User, question_id: str,
                 text: str | None, audio_url: str | None,
                 voice: dict[str, Any] | None = None) -> dict[str, Any]:
    """The host answers an open question once. A paid question's bounty moves from
    escrow to the host's earnings (less the platform fee) in the same transaction.
    ``voice``: the recording's fields (voice.attach), for a voice answer."""
    rooms.require_host(room, user)
    rooms.require_live(room)
    await get(app, room["_id"], question_id)
    now = app.clock.now()
    reply = {"text": text, "audio_url": audio_url, **(voice or {}), "at": now}

    async def write(session: Any) -> dict[str, Any] | None:
        answered = await app.store[QUESTIONS].find_one_and_update(
            {"_id": question_id, "room_id": room["_id"], "status": "open"},
            {"$set": {"status": "answered", "answer": reply, "answered_at": now}},
            session=session, return_document=ReturnDocument.AFTER)
        if answered is None:
            return None
        # Writing the room ties this transaction to the room's state: it conflicts
        # with the end of the room, so an answer never lands after the refund sweep.
        live = await app.store[ROOMS].update_one(
            {"_id": room["_id"], "state": rooms.LIVE}, {"$inc": {"answered": 1}},
            session=session)
        if live.matched_count == 0:
            raise Conflict("the room is not live", code="room_not_live")
        if answered["paid"] and answered["bounty"]:
            bounty = answered["bounty"]
            await app.money.ledger.post(
                f"live_qa:answer:{question_id}",
                [(accounts.escrow(ESCROW_NAME), -bounty),
                 *app.money.earnings_credits(bounty, room["host_id"])],
                memo=f"直播回答：{room['title']}",
                meta={"room_id": room["_id"], "question_id": question_id,
                      "order_id": answered.get("order_id")},
                session=session)
        return answered

    answered = await app.store.transaction(write)
    if answered is None:
        current = await get(app, room["_id"], question_id)
        if current["status"] == "answered":
            raise Conflict("the question is already answered", code="already_answered")
        raise Conflict(f"the question is {current['status']}", code="question_not_open",
                       status_now=current["status"])
    await history.publish(app, room["_id"], "answer",
                          {"question_id": question_id, "text": text, "audio_url": audio_url,
                           **(voice or {}), "question": public(answered)})
    if answered["paid"] and answered["bounty"]:
        await app.money.announce_earnings([accounts.earnings(room["host_id"])])
    await app.tell_user(answered["asker_id"], "question_answered",
                        {"room_id": room["_id"], "question_id": question_id,
                         "text": answered["text"], "voice": bool(audio_url or voice)})
    return answered
