"""A person's public profile: who they are (``app.users``), who follows them
(``app.follows``) and what plugins show of them (hook ``public_profile_sections``);
docs/api.md "Profiles"."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kpay.core.errors import NotFound
from kpay.core.plugins import each_implementation

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay")


async def public_profile(app: KPay, user_id: str, viewer_id: str | None) -> dict[str, Any]:
    """The profile anyone may see; ``following`` says whether ``viewer_id`` follows.
    404 ``user_not_found`` for no user or a blocked one."""
    person = await app.users.profile(user_id)
    if person is None or person["blocked"]:
        raise NotFound(f"no user {user_id!r}", code="user_not_found")
    return {"id": person["id"], "name": person["name"], "role": person["role"],
            "avatar_url": person["avatar_url"],
            "followers": await app.follows.followers(user_id),
            "following": await app.follows.is_following(viewer_id, user_id),
            "sections": await profile_sections(app, user_id)}


async def profile_sections(app: KPay, user_id: str) -> dict[str, Any]:
    """The sections plugins answer for ``user_id``, joined; a plugin that fails is
    left out (logged; raised afterwards in dev mode, so a bug cannot hide)."""
    calls = each_implementation(app.pm, "public_profile_sections",
                                {"app": app, "user_id": user_id})
    sections: dict[str, Any] = {}
    failure: Exception | None = None
    for called in calls:
        try:
            answer = await called.result()
            if answer is not None and not isinstance(answer, dict):
                raise TypeError(f"public_profile_sections returned {type(answer).__name__},"
                                " not a dict")
        except Exception as e:
            log.error("plugin %r failed in public_profile_sections", called.plugin, exc_info=e)
            failure = failure or e
            continue
        for name, section in (answer or {}).items():
            if name in sections:
                log.warning("plugin %r answered profile section %r again; left out",
                            called.plugin, name)
                continue
            sections[name] = section
    if failure is not None and app.dev:
        raise failure
    return sections
