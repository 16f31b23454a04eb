"""Access to resources across plugins: "may this user do this to it", "who owns it".

A resource is named ``<prefix>:<id>`` (``course:crs1``, ``room:r1``,
``consultation:c1``). The plugin that keeps the resource owns its prefix and answers
through a :class:`ResourceRule` returned by the ``register_resources`` hook; any other
plugin asks ``app.access`` and never reads the owner's collections.

Fail closed: a prefix nobody owns, an action the rule does not declare, a malformed
name or a user with no standing (unknown or blocked) is "not allowed" (owner None);
an exception in a rule reaches the caller, it is never taken as a yes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kpay.core.auth import User
from kpay.core.errors import PluginError
from kpay.core.plugins import await_me_maybe

if TYPE_CHECKING:
    from kpay.core.app import KPay

Owner = Callable[["KPay", str], "Awaitable[str | None] | str | None"]
Allows = Callable[["KPay", User, str, str], "Awaitable[bool] | bool"]


@dataclass(frozen=True)
class ResourceRule:
    """Owns every resource ``<prefix>:<id>``.

    ``actions`` are the actions the rule answers (``("view",)``); the core refuses any
    other without calling it. ``allows(app, user, action, id)`` returns (or awaits to)
    whether ``user`` (a :class:`kpay.core.auth.User` with the stored role) may do
    ``action``; only ``True`` counts as a yes. ``owner(app, id)`` returns the user id
    owning the resource, or None when there is no such resource.
    """

    prefix: str
    owner: Owner
    allows: Allows
    actions: tuple[str, ...]


class Access:
    """``app.access``: resource rules of every plugin, one owner per prefix."""

    def __init__(self, app: KPay, rules: list[ResourceRule]) -> None:
        self.app = app
        self.rules: dict[str, ResourceRule] = {}
        for rule in rules:
            if rule.prefix in self.rules:
                raise PluginError(f"resource prefix {rule.prefix!r} is claimed twice")
            if not rule.prefix.isidentifier():
                raise PluginError(f"resource prefix {rule.prefix!r} must be a plain word")
            self.rules[rule.prefix] = rule

    def _resolve(self, resource: str) -> tuple[ResourceRule, str] | None:
        prefix, colon, ident = resource.partition(":")
        rule = self.rules.get(prefix)
        if rule is None or not colon or not ident:
            return None
        return rule, ident

    async def allowed(self, user_id: str, action: str, resource: str) -> bool:
        """Whether ``user_id`` may do ``action`` to ``resource`` (``"room:r1"``)."""
        found = self._resolve(resource)
        if found is None or action not in found[0].actions:
            return False
        standing = await self.app.users.standing(user_id)
        if standing is None or standing.blocked:
            return False
        rule, ident = found
        answer = await await_me_maybe(rule.allows(self.app, User(user_id, standing.role),
                                                  action, ident))
        return answer is True

    async def owner(self, resource: str) -> str | None:
        """The user id owning ``resource``, or None (no such resource, unknown prefix)."""
        found = self._resolve(resource)
        if found is None:
            return None
        rule, ident = found
        return await await_me_maybe(rule.owner(self.app, ident))
