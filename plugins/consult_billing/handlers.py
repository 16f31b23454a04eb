"""HTTP routes of consult_billing (API.md "Consultations")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

import plugins.consult_billing.profile_section as profile_section
from kpay.core.errors import BadRequest
from kpay.core.web import BaseHandler, Route, api
from plugins.consult_billing import history, lifecycle, profiles, sessions
from plugins.consult_billing import responses as r

if TYPE_CHECKING:
    from kpay.core.app import KPay


class ConsultationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consultant_id: str = Field(min_length=1, max_length=64)
    adjust: dict[str, Any] = Field(default_factory=dict, description=(
        "Price adjustments for the per-minute rate, e.g. {\"coupon\": \"CODE\"}; "
        "priced at accept and fixed for the session"))


class MyProfileHandler(BaseHandler):
    @api("The caller's consultant profile", roles=("consultant",),
         response=r.ConsultantProfileResult)
    async def get(self) -> None:
        user = self.require_user("consultant")
        doc = await profiles.get_profile(self.kpay, user.id)
        person = await self.kpay.users.profile(user.id)
        self.write_json({"profile": profile_section.shown(doc, person=person)})

    @api("Set the caller's rate (fen per minute), minimum and maximum minutes, availability",
         body=profiles.ProfileUpdate, roles=("consultant",),
         response=r.ConsultantProfileResult)
    async def put(self) -> None:
        user = self.require_user("consultant")
        update = self.body(profiles.ProfileUpdate)
        await profiles.save_profile(self.kpay, user.id, update)
        if update.bio is not None:
            await profile_section.save_bio(self.kpay, user.id, update.bio)
        doc = await profiles.get_profile(self.kpay, user.id)
        person = await self.kpay.users.profile(user.id)
        self.write_json({"profile": profile_section.shown(doc, person=person)})


class ConsultantsHandler(BaseHandler):
    @api("Available consultants, cheapest first, of one category if given (public)",
         auth=False, query=("category", "limit"), response=r.ConsultantList)
    async def get(self) -> None:
        limit = self.query_int("limit", 50, 1, 200)
        category = self.kpay.search.check_category(self.get_query_argument("category", None))
        docs = await profiles.available_profiles(self.kpay, limit, category)
        busy = {d["busy_consultant"] async for d in self.kpay.store[sessions.CONSULTATIONS].find(
            {"busy_consultant": {"$in": [d["_id"] for d in docs]}}, {"busy_consultant": 1})}
        people = await profile_section.people_of(self.kpay, docs)
        self.write_json({"consultants": [
            profile_section.shown(d, d["_id"] in busy, people.get(d["_id"])) for d in docs]})


class ConsultantHandler(BaseHandler):
    @api("One consultant's public profile", auth=False, response=r.ConsultantProfileResult)
    async def get(self, consultant_id: str) -> None:
        doc = await profiles.get_profile(self.kpay, consultant_id)
        busy = await self.kpay.store[sessions.CONSULTATIONS].find_one(
            {"busy_consultant": consultant_id}, {"_id": 1})
        person = await self.kpay.users.profile(consultant_id)
        self.write_json({"profile": profile_section.shown(doc, busy is not None, person)})


class ConsultationsHandler(BaseHandler):
    @api("Request a consultation; 402 when the wallet cannot pay the minimum minutes",
         body=ConsultationRequest, roles=("student",), status=201,
         response=r.ConsultationResult)
    async def post(self) -> None:
        user = self.require_user("student")
        body = self.body(ConsultationRequest)
        doc = await lifecycle.request(self.kpay, user, body.consultant_id, body.adjust)
        self.write_json({"consultation": sessions.public(doc)}, 201)

    @api("The caller's consultations, newest first", query=("role", "limit"),
         response=r.ConsultationList)
    async def get(self) -> None:
        user = self.require_user()
        role = self.get_query_argument("role", None) or (
            "consultant" if user.role == "consultant" else "student")
        if role not in ("student", "consultant"):
            raise BadRequest("role must be student or consultant", code="invalid_field",
                             field="role")
        limit = self.query_int("limit", 50, 1, 200)
        found = await history.history(self.kpay, user.id, role, limit)
        self.write_json({"consultations": found})


class ConsultationHandler(BaseHandler):
    @api("One consultation: status, billed minutes and money so far",
         response=r.Consultation)
    async def get(self, consultation_id: str) -> None:
        user = self.require_user()
        doc = await sessions.load_for_party(self.kpay, user, consultation_id)
        self.write_json(sessions.public(doc))


class AcceptHandler(BaseHandler):
    @api("Accept a request: minute 1 is charged at once", roles=("consultant",),
         response=r.ConsultationResult)
    async def post(self, consultation_id: str) -> None:
        user = self.require_user("consultant")
        doc = await lifecycle.accept(self.kpay, user, consultation_id)
        self.write_json({"consultation": sessions.public(doc)})


class DeclineHandler(BaseHandler):
    @api("Decline a request; nothing is charged", roles=("consultant",),
         response=r.ConsultationResult)
    async def post(self, consultation_id: str) -> None:
        user = self.require_user("consultant")
        doc = await lifecycle.decline(self.kpay, user, consultation_id)
        self.write_json({"consultation": sessions.public(doc)})


class EndHandler(BaseHandler):
    @api("End the consultation (either party); before accept this cancels or declines",
         response=r.ConsultationResult)
    async def post(self, consultation_id: str) -> None:
        user = self.require_user()
        doc = await lifecycle.end_by(self.kpay, user, consultation_id)
        self.write_json({"consultation": sessions.public(doc)})


class ReceiptHandler(BaseHandler):
    @api("The receipt: every billed minute as booked in the ledger, and the totals",
         response=r.ReceiptResult)
    async def get(self, consultation_id: str) -> None:
        user = self.require_user()
        doc = await sessions.load_for_party(self.kpay, user, consultation_id)
        self.write_json({"receipt": await history.receipt(self.kpay, doc)})


def routes(app: KPay) -> list[Route]:
    tags = ("consult_billing",)
    return [
        # /me before /{consultant_id}: the first matching rule wins.
        Route("/api/v1/consultants/me", MyProfileHandler, tags=tags),
        Route("/api/v1/consultants", ConsultantsHandler, tags=tags),
        Route("/api/v1/consultants/{consultant_id}", ConsultantHandler, tags=tags),
        Route("/api/v1/consultations", ConsultationsHandler, tags=tags),
        Route("/api/v1/consultations/{consultation_id}", ConsultationHandler, tags=tags),
        Route("/api/v1/consultations/{consultation_id}/accept", AcceptHandler, tags=tags),
        Route("/api/v1/consultations/{consultation_id}/decline", DeclineHandler, tags=tags),
        Route("/api/v1/consultations/{consultation_id}/end", EndHandler, tags=tags),
        Route("/api/v1/consultations/{consultation_id}/receipt", ReceiptHandler, tags=tags),
    ]
