"""Routes of a user's saved notifications (docs/api.md, "Notifications")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kpay.core.notifications import MAX_PAGE
from kpay.core.web import BaseHandler, Route, api

# -- what the routes answer (OpenAPI) ----------------------------------------------------


class Notification(BaseModel):
    id: str
    kind: str
    title: str
    body: str
    link: str | None
    created_at: datetime
    read: bool


class NotificationPage(BaseModel):
    notifications: list[Notification]
    next_cursor: str | None
    unread: int


class UnreadCount(BaseModel):
    unread: int


class ReadResult(BaseModel):
    changed: int
    unread: int


# -- bodies --------------------------------------------------------------------------------


class MarkRead(BaseModel):
    """Either ``ids`` (at most one page) or ``all: true``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"all": True}})

    ids: list[str] | None = Field(None, min_length=1, max_length=MAX_PAGE)
    all: Literal[True] | None = None

    @model_validator(mode="after")
    def one_of(self) -> MarkRead:
        if (self.ids is None) == (self.all is None):
            raise ValueError("send either ids or all: true")
        if self.ids is not None and any(len(i) > 64 for i in self.ids):
            raise ValueError("ids are at most 64 characters")
        return self


# -- handlers ------------------------------------------------------------------------------


class NotificationsHandler(BaseHandler):
    @api("My notifications, newest first (a page; next_cursor continues)",
         query=("cursor", "limit"), response=NotificationPage)
    async def get(self) -> None:
        user = self.require_user()
        limit = self.query_int("limit", 20, 1, MAX_PAGE)
        cursor = self.get_query_argument("cursor", None) or None
        notifications = self.kpay.notifications
        page = await notifications.list(user.id, limit, cursor[:64] if cursor else None)
        self.write_json({
            "notifications": page,
            "next_cursor": page[-1]["id"] if len(page) == limit else None,
            "unread": await notifications.unread_count(user.id)})


class UnreadCountHandler(BaseHandler):
    @api("How many of my notifications are unread", response=UnreadCount)
    async def get(self) -> None:
        user = self.require_user()
        self.write_json({"unread": await self.kpay.notifications.unread_count(user.id)})


class MarkReadHandler(BaseHandler):
    @api("Mark some of my notifications, or all of them, read", body=MarkRead,
         response=ReadResult)
    async def post(self) -> None:
        user = self.require_user()
        change = self.body(MarkRead)
        notifications = self.kpay.notifications
        changed = await notifications.mark_read(user.id, change.ids)
        self.write_json({"changed": changed,
                         "unread": await notifications.unread_count(user.id)})


def notification_routes() -> list[Route]:
    return [
        Route("/api/v1/notifications", NotificationsHandler, tags=("notifications",)),
        Route("/api/v1/notifications/unread-count", UnreadCountHandler,
              tags=("notifications",)),
        Route("/api/v1/notifications/read", MarkReadHandler, tags=("notifications",)),
    ]
