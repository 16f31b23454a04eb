"""The ``consult:<id>`` channel: only the two parties subscribe; the server relays their
WebRTC signalling (offer, answer, ice) and never looks inside it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kpay.core.auth import User
from kpay.core.errors import ApiError, Conflict, Forbidden
from kpay.core.realtime.channels import ChannelRule
from plugins.consult_billing import sessions

if TYPE_CHECKING:
    from kpay.core.app import KPay

SIGNAL_TYPES = ("offer", "answer", "ice")
MAX_SIGNAL_BYTES = 16_384


async def on_publish(app: KPay, user: User, consultation_id: str, kind: str,
                     data: Any) -> None:
    if kind not in SIGNAL_TYPES:
        raise ApiError(f"only {', '.join(SIGNAL_TYPES)} may be sent on consult channels",
                       code="unsupported_type")
    if not isinstance(data, dict):
        raise ApiError("data must be an object", code="bad_frame")
    if len(json.dumps(data)) > MAX_SIGNAL_BYTES:
        raise ApiError(f"signalling data over {MAX_SIGNAL_BYTES} bytes", code="bad_frame")
    doc = await sessions.load(app, consultation_id)
    if doc is None or sessions.party_of(doc, user.id) is None:
        raise Forbidden("only the two parties may signal", code="forbidden")
    if doc["status"] not in (sessions.ACTIVE, sessions.PAUSED):
        raise Conflict(f"the consultation is {doc['status']}; calls run only while it is "
                       "accepted and not ended", code="not_active", state=doc["status"])
    await app.publish(sessions.channel_of(consultation_id), kind,
                      {**data, "from": user.id})


CONSULT_CHANNEL = ChannelRule("consult", sessions.is_party, on_publish)
