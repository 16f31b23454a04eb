"""Order kinds ``live_ticket`` and ``live_question``.

Tickets: one per user per room, claimed inside the order-creation transaction by
taking a seat (seats.py: one of the room's seat shards, guarded ``left >= 1``) and
inserting ``live_tickets/<room>:<user>`` (unique ``_id``) with that shard's id; a
refused claim aborts the transaction, so nothing is charged. A ticket released
unpaid or refunded (revoked) gives its seat back in one transaction with its new
status. Ticket money goes to the host's earnings less the platform fee.

Questions: the bounty goes to ``escrow:live_qa`` until the host answers (escrow ->
host earnings + fee) or the room ends (escrow -> the asker's wallet, as a refund).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field
from pymongo.errors import DuplicateKeyError

from kpay.core.auth import User
from kpay.core.errors import BadRequest, Conflict
from kpay.core.money import accounts
from kpay.core.money.kinds import OrderKind, Priced, parse_item
from plugins.live_qa import questions, refunds, rooms, seats
from plugins.live_qa.settings import settings_of
from plugins.live_qa.store import ESCROW_NAME, QUESTIONS, ROOMS, TICKETS

if TYPE_CHECKING:
    from kpay.core.app import KPay

RoomId = Annotated[str, Field(min_length=1, max_length=64)]


class TicketItem(BaseModel):
    kind: str
    room_id: RoomId


class QuestionItem(BaseModel):
    kind: str
    room_id: RoomId
    text: str
    bounty: Annotated[int, Field(strict=True)]


class LiveTicket(OrderKind):
    name = "live_ticket"
    adjustable = True  # coupons and discounts apply; the host's share shrinks or not

    async def price(self, app: KPay, user: User, item: dict[str, Any]) -> Priced:
        wanted = parse_item(TicketItem, item)
        room = await rooms.get(app, wanted.room_id)
        if room["host_id"] == user.id:
            raise Conflict("the host needs no ticket", code="host_needs_no_ticket")
        if room["state"] == rooms.ENDED:
            raise Conflict("the room has ended", code="room_ended")
        # Friendly early answers; reserve() is what actually guards both.
        await self._check_no_ticket(app, room["_id"], user.id)
        await seats.fill(app, [room])
        if room["seats_left"] <= 0:
            raise Conflict("the room is sold out", code="sold_out", capacity=room["capacity"])
        price = room["ticket_price"]
        return Priced(price, f"直播门票：{room['title']}",
                      app.money.earnings_credits(price, room["host_id"]),
                      {"kind": self.name, "room_id": room["_id"]})

    async def _check_no_ticket(self, app: KPay, room_id: str, user_id: str) -> None:
        ticket = await rooms.ticket_of(app, room_id, user_id)
        if ticket is None:
            return
        if ticket["status"] == "pending":
            raise Conflict("a ticket order for this room is waiting to be paid",
                           code="ticket_pending", order_id=ticket["order_id"])
        raise Conflict("you already have a ticket to this room", code="already_has_ticket")

    async def reserve(self, app: KPay, order: dict[str, Any], session: Any) -> None:
        room_id, user_id = order["item"]["room_id"], order["user_id"]
        # The state as of the transaction's snapshot: a sale racing the end is as if it
        # came just before it (ending reads no seats). The room's document is not
        # written here: it would be the hot document again.
        room = await app.store[ROOMS].find_one(
            {"_id": room_id}, {"state": 1, "capacity": 1}, session=session)
        if room is None or room["state"] == rooms.ENDED:
            raise Conflict("the room has ended", code="room_ended")
        seat = await seats.take(app, room_id, session)
        if seat is None:
            raise Conflict("the room is sold out", code="sold_out", capacity=room["capacity"])
        try:
            await app.store[TICKETS].insert_one({
                "_id": rooms.ticket_id(room_id, user_id), "room_id": room_id,
                "user_id": user_id, "order_id": order["_id"], "status": "pending",
                "seat": seat, "muted": False, "created_at": app.clock.now()}, session=session)
        except DuplicateKeyError:
            raise Conflict("you already have a ticket to this room",
                           code="already_has_ticket") from None

    async def release(self, app: KPay, order: dict[str, Any]) -> None:
        room_id, user_id = order["item"]["room_id"], order["user_id"]

        async def give_back(session: Any) -> None:
            dropped = await app.store[TICKETS].find_one_and_delete(
                {"_id": rooms.ticket_id(room_id, user_id), "order_id": order["_id"],
                 "status": "pending"}, session=session)
            if dropped is not None:
                await seats.give_back(app, room_id, dropped.get("seat"), session)

        await app.store.transaction(give_back)

    async def fulfil(self, app: KPay, order: dict[str, Any]) -> None:
        await app.store[TICKETS].update_one(
            {"_id": rooms.ticket_id(order["item"]["room_id"], order["user_id"]),
             "order_id": order["_id"], "status": "pending"},
            {"$set": {"status": "active", "activated_at": app.clock.now()}})

    async def on_refund(self, app: KPay, order: dict[str, Any], refund: dict[str, Any]) -> None:
        if refund["purpose"] != "revoke":
            return  # a price adjustment: the ticket stays good
        # A revoked ticket no longer lets its holder in, and its seat is free again.
        # Once: the status guards it (on_refund may run again after a crash).
        room_id = order["item"]["room_id"]

        async def revoke(session: Any) -> None:
            ticket = await app.store[TICKETS].find_one_and_update(
                {"_id": rooms.ticket_id(room_id, order["user_id"]),
                 "order_id": order["_id"], "status": {"$ne": "refunded"}},
                {"$set": {"status": "refunded", "refunded_at": app.clock.now()}},
                session=session)
            if ticket is not None:
                await seats.give_back(app, room_id, ticket.get("seat"), session)

        await app.store.transaction(revoke)


class LiveQuestion(OrderKind):
    name = "live_question"

    async def price(self, app: KPay, user: User, item: dict[str, Any]) -> Priced:
        wanted = parse_item(QuestionItem, item)
        text = questions.clean_text(app, wanted.text, field="item.text")
        room = await rooms.get(app, wanted.room_id)
        await questions.require_asker(app, room, user)
        least = max(1, room["question_min_price"])
        if wanted.bounty < least:
            raise BadRequest(f"a paid question costs at least {least} fen",
                             code="bounty_too_low", field="item.bounty", min=least)
        if wanted.bounty > settings_of(app).max_price:
            raise BadRequest(f"a bounty is at most {settings_of(app).max_price} fen",
                             code="invalid_field", field="item.bounty")
        return Priced(wanted.bounty, f"直播提问：{room['title']}",
                      [(accounts.escrow(ESCROW_NAME), wanted.bounty)],
                      {"kind": self.name, "room_id": room["_id"], "text": text,
                       "bounty": wanted.bounty})

    async def reserve(self, app: KPay, order: dict[str, Any], session: Any) -> None:
        await app.store[QUESTIONS].insert_one(
            questions.new_paid(app, order), session=session)

    async def release(self, app: KPay, order: dict[str, Any]) -> None:
        await app.store[QUESTIONS].update_one(
            {"_id": questions.id_for_order(order["_id"]), "status": "pending"},
            {"$set": {"status": "closed"}})

    async def fulfil(self, app: KPay, order: dict[str, Any]) -> None:
        question = await questions.open_paid(app, order)
        # Paid (say through a slow provider notify) after the room ended: nobody will
        # answer it, so it is refunded at once, as the end of the room would have.
        room = await rooms.get(app, question["room_id"])
        if room["state"] == rooms.ENDED:
            await refunds.refund_question(app, question)

    async def on_refund(self, app: KPay, order: dict[str, Any], refund: dict[str, Any]) -> None:
        # Refunds this plugin starts mark the question themselves; this covers a
        # refund started elsewhere (an admin) so the queue stops showing it.
        await app.store[QUESTIONS].update_one(
            {"_id": questions.id_for_order(order["_id"]),
             "status": {"$in": ["pending", "open"]}},
            {"$set": {"status": "refunded", "refunded_at": app.clock.now()}})
