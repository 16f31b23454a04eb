"""Tags, segments and messages to segments: a consultant's students and the
platform's users, classified and told things (docs/audience.md).

A consultant's tags, segments and messages are theirs alone and reach only their
students (:mod:`kpay.core.audience.students`); an operator's are the platform's
(owner ``PLATFORM``) and reach anyone.
"""

from __future__ import annotations

from kpay.core.store import IndexSpec

TAGS = "audience_tags"
SEGMENTS = "audience_segments"
MESSAGES = "audience_messages"
#: The owner of operators' tags, segments and messages.
PLATFORM = "platform"

INDEXES = [
    IndexSpec.of(TAGS, "owner", "user_id", "tag", unique=True),
    IndexSpec.of(TAGS, "owner", "tag", "user_id"),
    IndexSpec.of(SEGMENTS, "owner", ("created_at", -1)),
    IndexSpec.of(MESSAGES, "owner", ("created_at", -1)),
]
