"""Asking every plugin for its part of one user (hooks ``admin_user_sections``,
``export_user_data``, ``anonymise_user``; docs/plugins.md)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kpay.core.plugins import close_awaitables, each_implementation

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.admin")


async def plugin_parts(app: KPay, hook: str, user_id: str, *,
                       fail_closed: bool) -> dict[str, Any]:
    """``{plugin name: answer}`` of every plugin answering ``hook`` (None answers left
    out). ``fail_closed``: a failing plugin fails the whole call (an export or an
    anonymisation must not silently miss a plugin's data); otherwise it is logged and
    left out (raised afterwards in dev mode, so a bug cannot hide)."""
    parts: dict[str, Any] = {}
    failure: Exception | None = None
    calls = each_implementation(app.pm, hook, {"app": app, "user_id": user_id})
    for called in calls:
        try:
            answer = await called.result()
        except Exception as e:
            if fail_closed:
                close_awaitables(calls)  # the others' coroutines are not left dangling
                raise
            log.error("plugin %r failed in %s", called.plugin, hook, exc_info=e)
            failure = failure or e
            continue
        if answer is not None:
            parts[called.plugin] = answer
    if failure is not None and app.dev:
        raise failure
    return parts
