"""wechat_notify's routes (docs/api.md "WeChat notifications"): a user's consents to
subscription templates, and (dev mode, admins) the sends recorded."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

from kpay.core.errors import BadRequest
from kpay.core.web import BaseHandler, Route, api
from plugins.wechat_notify import events, sends
from plugins.wechat_notify.settings import settings_of, subscribe_templates


class ConsentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    accepted: bool


class Consent(BaseModel):
    kind: str
    template_id: str
    accepted: bool


class Consents(BaseModel):
    consents: list[Consent]


class SentRecord(BaseModel):
    id: str
    user_id: str
    kind: str
    mode: str
    template_id: str
    state: str
    reason: str | None = None
    errcode: int | None = None
    attempts: int
    data: dict[str, Any]
    link: str | None = None
    created_at: datetime


class SentList(BaseModel):
    sends: list[SentRecord]


async def consents_of(app: Any, user_id: str) -> list[dict[str, Any]]:
    out = []
    for kind, config in settings_of(app).kinds.items():
        if config.mode == "subscribe" and config.template_id:
            out.append({"kind": kind, "template_id": config.template_id,
                        "accepted": await sends.has_consent(app, user_id, config.template_id)})
    return out


class ConsentsHandler(BaseHandler):
    @api("My consents to the WeChat subscription-message templates kpay may send",
         response=Consents)
    async def get(self) -> None:
        user = self.require_user()
        self.write_json({"consents": await consents_of(self.kpay, user.id)})

    @api("Record what wx-open-subscribe returned for one subscription template",
         body=ConsentBody, response=Consents)
    async def post(self) -> None:
        user = self.require_user()
        body = self.body(ConsentBody)
        if body.template_id not in subscribe_templates(self.kpay):
            raise BadRequest("template_id is not a subscription template kpay sends",
                             code="unknown_template", field="template_id")
        await sends.record_consent(self.kpay, user.id, body.template_id, body.accepted)
        self.write_json({"consents": await consents_of(self.kpay, user.id)})


class SentHandler(BaseHandler):
    @api("The WeChat notifications recorded, newest first (dev mode, admins)",
         roles=("admin",), query=("limit",), response=SentList)
    async def get(self) -> None:
        self.require_user("admin")
        limit = self.query_int("limit", 50, 1, 200)
        self.write_json({"sends": await sends.recent(self.kpay, limit)})


def routes(app: Any) -> list[Route]:
    tags = ("wechat_notify",)
    found = [Route("/api/v1/wechat-notify/consents", ConsentsHandler, tags=tags)]
    if app.dev:
        found.append(Route("/api/v1/wechat-notify/sent", SentHandler, tags=tags))
    return found + events.routes(app)
