"""HTTP routes of live_qa (API.md "Live Q&A"), thin: parse, check, call, answer."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from kpay.core.digits import parse_digits
from kpay.core.errors import BadRequest
from kpay.core.web import BaseHandler, Route, api
from plugins.live_qa import history, moderation, questions, refunds, rooms, voice
from plugins.live_qa import responses as r
from plugins.live_qa.channel import MediaUrl
from plugins.live_qa.storefront import index_room, storefront_routes, with_hosts

TAGS = ("live_qa",)
MAX_SEQ = 2**62

STATUS_FILTERS = {
    "open": ("open",),
    "answered": ("answered",),
    "refunded": ("refunded",),
    "all": ("open", "answered", "refunding", "refunded"),
}


class FreeQuestion(BaseModel):
    text: str


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)] | None = None
    audio_url: MediaUrl | None = None
    #: A voice answer: an uploaded recording (POST /api/v1/media/uploads, kind audio,
    #: purpose answer), checked with app.media.attach.
    audio_media_id: Annotated[str, StringConstraints(max_length=64)] | None = None


class RoomsHandler(BaseHandler):
    @api("Create a live room (consultant)", body=rooms.RoomCreate, roles=("consultant",),
         status=201, response=r.LiveRoomResult)
    async def post(self) -> None:
        user = self.require_user("consultant")
        room = await rooms.create(self.kpay, user, self.body(rooms.RoomCreate))
        await index_room(self.kpay, room)
        self.write_json({"room": await rooms.shown(self.kpay, room)}, 201)

    @api("Rooms: a host's (host_id, 'me' for yours) newest first, else rooms soonest "
         "first by status (open: upcoming and live, live, upcoming) and category, each "
         "with its host's name", query=("host_id", "status", "category", "limit"),
         response=r.LiveRoomList)
    async def get(self) -> None:
        user = self.require_user()
        host_id = self.get_query_argument("host_id", None) or None
        if host_id == "me":
            host_id = user.id
        limit = self.query_int("limit", 50, 1, 200)
        status = self.get_query_argument("status", "open")
        if status not in rooms.LISTED_STATES:
            raise BadRequest(f"status must be one of {', '.join(rooms.LISTED_STATES)}",
                             code="invalid_field", field="status")
        category = self.kpay.search.check_category(self.get_query_argument("category", None))
        listed = await rooms.listing(self.kpay, host_id, limit, status, category)
        self.write_json({"rooms": await with_hosts(self.kpay, listed)})


class RoomHandler(BaseHandler):
    @api("A room, with the caller's access to it", response=r.LiveRoomView)
    async def get(self, room_id: str) -> None:
        user = self.require_user()
        room = await rooms.get(self.kpay, room_id)
        ticket = await rooms.ticket_of(self.kpay, room_id, user.id)
        me = {"host": room["host_id"] == user.id,
              "ticket": ticket["status"] if ticket else None,
              "muted": bool(ticket and ticket.get("muted"))}
        self.write_json({"room": await rooms.shown(self.kpay, room), "me": me})

    @api("Edit a room (host); refused once it has ended", body=rooms.RoomUpdate,
         response=r.LiveRoomResult)
    async def patch(self, room_id: str) -> None:
        user = self.require_user()
        change = self.body(rooms.RoomUpdate)
        room = await rooms.update(self.kpay, await rooms.get(self.kpay, room_id), user, change)
        await index_room(self.kpay, room)
        self.write_json({"room": await rooms.shown(self.kpay, room)})


class StartHandler(BaseHandler):
    @api("Start the room: scheduled -> live (host)", response=r.LiveRoomResult)
    async def post(self, room_id: str) -> None:
        user = self.require_user()
        room = await rooms.start(self.kpay, await rooms.get(self.kpay, room_id), user)
        await index_room(self.kpay, room)
        self.write_json({"room": await rooms.shown(self.kpay, room)})


class EndHandler(BaseHandler):
    @api("End the room: live -> ended (host); unanswered paid questions are refunded",
         response=r.LiveRoomEnded)
    async def post(self, room_id: str) -> None:
        user = self.require_user()
        room, refunded = await refunds.end_room(
            self.kpay, await rooms.get(self.kpay, room_id), user)
        await index_room(self.kpay, room)
        self.write_json({"room": await rooms.shown(self.kpay, room), "refunded": refunded})


class QuestionsHandler(BaseHandler):
    @api("The room's questions: paid first by bounty, then oldest first (members)",
         query=("status", "limit"), response=r.LiveQuestionList)
    async def get(self, room_id: str) -> None:
        user = self.require_user()
        room = await rooms.get(self.kpay, room_id)
        await rooms.require_member(self.kpay, room, user)
        wanted = self.get_query_argument("status", "open")
        if wanted not in STATUS_FILTERS:
            raise BadRequest(f"status must be one of {', '.join(STATUS_FILTERS)}",
                             code="invalid_field", field="status")
        limit = self.query_int("limit", 200, 1, 500)
        found = await questions.queue(self.kpay, room_id, STATUS_FILTERS[wanted], limit)
        self.write_json({"questions": found})

    @api("Ask a free question (ticket holders, where the room allows free questions)",
         body=FreeQuestion, status=201, response=r.LiveQuestionResult)
    async def post(self, room_id: str) -> None:
        user = self.require_user()
        request = self.body(FreeQuestion)
        room = await rooms.get(self.kpay, room_id)
        question = await questions.ask_free(self.kpay, room, user, request.text)
        self.write_json({"question": questions.public(question)}, 201)


class AnswerHandler(BaseHandler):
    @api("Answer a question with text, an audio URL or a voice recording (host), once",
         body=AnswerBody, response=r.LiveQuestionResult)
    async def post(self, room_id: str, question_id: str) -> None:
        user = self.require_user()
        body = self.body(AnswerBody)
        if not body.text and not body.audio_url and not body.audio_media_id:
            raise BadRequest("an answer needs text, audio_url or audio_media_id",
                             code="invalid_field", field="text")
        room = await rooms.get(self.kpay, room_id)
        rooms.require_host(room, user)
        recorded = (await voice.attach(self.kpay, user, body.audio_media_id)
                    if body.audio_media_id else None)
        answered = await questions.answer(self.kpay, room, user, question_id,
                                          body.text or None, body.audio_url, recorded)
        self.write_json({"question": questions.public(answered)})


class AnswerAudioHandler(BaseHandler):
    @api("A short-lived signed URL of a question's voice answer (members)",
         response=r.LiveAnswerAudio)
    async def get(self, room_id: str, question_id: str) -> None:
        user = self.require_user()
        room = await rooms.get(self.kpay, room_id)
        self.write_json(await voice.audio_url(self.kpay, room, user, question_id))


class UpvoteHandler(BaseHandler):
    @api("同问: upvote an open question, once per user (members)",
         response=r.LiveQuestionResult)
    async def post(self, room_id: str, question_id: str) -> None:
        user = self.require_user()
        room = await rooms.get(self.kpay, room_id)
        question = await questions.upvote(self.kpay, room, user, question_id)
        self.write_json({"question": questions.public(question)})


class MessagesHandler(BaseHandler):
    @api("Replay: the room's events after seq `since`, oldest first (members)",
         query=("since", "limit"), response=r.LiveEventPage)
    async def get(self, room_id: str) -> None:
        user = self.require_user()
        room = await rooms.get(self.kpay, room_id)
        await rooms.require_member(self.kpay, room, user)
        since = self.query_int("since", 0, 0, MAX_SEQ)
        limit = self.query_int("limit", 100, 1, 500)
        messages, more = await history.page(self.kpay, room_id, since, limit)
        next_since = messages[-1]["seq"] if messages else since
        self.write_json({"messages": messages, "more": more, "next_since": next_since})


class MessageHandler(BaseHandler):
    @api("Remove a chat message (host); the removal is broadcast",
         response=r.LiveMessageRemoved)
    async def delete(self, room_id: str, seq: str) -> None:
        user = self.require_user()
        number = parse_digits(seq)
        if number is None:
            raise BadRequest("seq must be an integer", code="invalid_field", field="seq")
        room = await rooms.get(self.kpay, room_id)
        await moderation.remove_message(self.kpay, room, user, number)
        self.write_json({"removed": number})


class MuteHandler(BaseHandler):
    muted = True

    @api("Mute or unmute a ticket holder (host)", response=r.LiveMemberMuted)
    async def post(self, room_id: str, user_id: str) -> None:
        user = self.require_user()
        room = await rooms.get(self.kpay, room_id)
        ticket = await moderation.set_muted(self.kpay, room, user, user_id, self.muted)
        self.write_json({"user_id": user_id, "muted": ticket["muted"]})


class UnmuteHandler(MuteHandler):
    muted = False


class MemberHandler(BaseHandler):
    @api("Remove a user from the room (host): ticket revoked, sockets unsubscribed",
         response=r.LiveMemberRemoved)
    async def delete(self, room_id: str, user_id: str) -> None:
        user = self.require_user()
        room = await rooms.get(self.kpay, room_id)
        ended = await moderation.remove_user(self.kpay, room, user, user_id)
        self.write_json({"user_id": user_id, "removed": True, "subscriptions_ended": ended})


def routes() -> list[Route]:
    base = "/api/v1/rooms"
    return [
        Route(base, RoomsHandler, tags=TAGS),
        Route(base + "/{room_id}", RoomHandler, tags=TAGS),
        Route(base + "/{room_id}/start", StartHandler, tags=TAGS),
        Route(base + "/{room_id}/end", EndHandler, tags=TAGS),
        Route(base + "/{room_id}/questions", QuestionsHandler, tags=TAGS),
        Route(base + "/{room_id}/questions/{question_id}/answer", AnswerHandler, tags=TAGS),
        Route(base + "/{room_id}/questions/{question_id}/upvote", UpvoteHandler, tags=TAGS),
        Route(base + "/{room_id}/questions/{question_id}/audio", AnswerAudioHandler,
              tags=TAGS),
        Route(base + "/{room_id}/messages", MessagesHandler, tags=TAGS),
        Route(base + "/{room_id}/messages/{seq}", MessageHandler, tags=TAGS),
        Route(base + "/{room_id}/members/{user_id}", MemberHandler, tags=TAGS),
        Route(base + "/{room_id}/members/{user_id}/mute", MuteHandler, tags=TAGS),
        Route(base + "/{room_id}/members/{user_id}/unmute", UnmuteHandler, tags=TAGS),
        *storefront_routes(),
    ]
