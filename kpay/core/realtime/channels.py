"""Channel rules: which plugin owns a channel prefix, who may subscribe, who may publish."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kpay.core.auth import User
from kpay.core.errors import Forbidden

if TYPE_CHECKING:
    from kpay.core.app import KPay

CanSubscribe = Callable[["KPay", User, str], "Awaitable[bool] | bool"]
OnPublish = Callable[["KPay", User, str, str, Any], "Awaitable[None] | None"]


@dataclass(frozen=True)
class ChannelRule:
    """Owns every channel ``<prefix>:<id>``.

    ``can_subscribe(app, user, id)`` says whether ``user`` may subscribe to
    ``<prefix>:<id>``. ``on_publish(app, user, id, type, data)`` handles a client's
    ``pub`` frame: it checks the sender, stores what must be kept and publishes
    through ``app.publish``; it raises an ``ApiError`` to refuse. Without
    ``on_publish``, clients may not publish on the channel.
    """

    prefix: str
    can_subscribe: CanSubscribe
    on_publish: OnPublish | None = None


def own_user_channel(app: KPay, user: User, ident: str) -> bool:
    return user.id == ident


USER_CHANNEL = ChannelRule("user", own_user_channel)


class ChannelRegistry:
    def __init__(self, rules: list[ChannelRule]) -> None:
        self.rules: dict[str, ChannelRule] = {}
        for rule in [USER_CHANNEL, *rules]:
            if rule.prefix in self.rules:
                raise ValueError(f"channel prefix {rule.prefix!r} is claimed twice")
            if not rule.prefix.isidentifier():
                raise ValueError(f"channel prefix {rule.prefix!r} must be a plain word")
            self.rules[rule.prefix] = rule

    def rule(self, prefix: str) -> ChannelRule:
        rule = self.rules.get(prefix)
        if rule is None:
            raise Forbidden(f"no such channel type {prefix!r}", code="unknown_channel")
        return rule
