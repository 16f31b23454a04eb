"""A throwaway plugin for the audience tests: an order kind paid to a seller named in
the item (so a test makes students of any consultant through the real orders API), a
rule kind, named students and a forwarder that fails for one user."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kpay import hookimpl
from kpay.core.audience.rules import AudienceRule
from kpay.core.money.kinds import OrderKind, Priced, parse_item


class LessonItem(BaseModel):
    kind: str
    seller: str = Field(min_length=1, max_length=32)
    fen: int = Field(ge=1, le=100_000)


class Lesson(OrderKind):
    """``{"kind": "test_lesson", "seller": ..., "fen": ...}`` paid to ``seller``."""

    name = "test_lesson"

    async def price(self, app: Any, user: Any, item: dict[str, Any]) -> Priced:
        parsed = parse_item(LessonItem, item)
        return Priced(parsed.fen, f"lesson of {parsed.seller}",
                      app.money.earnings_credits(parsed.fen, parsed.seller),
                      {"kind": self.name, "seller": parsed.seller, "fen": parsed.fen})

    async def fulfil(self, app: Any, order: dict[str, Any]) -> None:
        return None


class NameParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    starts: str = Field(min_length=1, max_length=8)


class AudiencePlugin:
    def __init__(self) -> None:
        self.named: dict[str, list[str]] = {}
        self.fail_for: set[str] = set()
        self.forwarded: list[tuple[str, str, dict[str, Any]]] = []

    @hookimpl
    def register_collections(self, app: Any) -> list[str]:
        return []

    @hookimpl
    def register_order_kinds(self, app: Any) -> list[OrderKind]:
        return [Lesson()]

    @hookimpl
    def audience_students(self, app: Any, consultant_id: str) -> list[str]:
        return self.named.get(consultant_id, [])

    @hookimpl
    def register_audience_rules(self, app: Any) -> list[AudienceRule]:
        async def members(app: Any, owner: str, params: NameParams) -> set[str]:
            return {u for users in self.named.values() for u in users
                    if u.startswith(params.starts)}
        return [AudienceRule("test_named", "测试名单", NameParams, members)]

    @hookimpl
    def on_user_notification(self, user_id: str, kind: str, data: dict[str, Any]) -> None:
        if user_id in self.fail_for:
            raise RuntimeError("forwarder down for this user")
        self.forwarded.append((user_id, kind, data))
