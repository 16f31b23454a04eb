"""Per-user storage quotas (``[media] quota_*_bytes``).

One counter per user, ``committed``: the bytes of their kept media plus the declared
sizes of their uploads in progress. A guarded ``$inc`` takes from it (never past the
quota, whatever runs at once on any node); an upload gives its reservation back when
it completes (and takes its real size), fails or expires.
"""

from __future__ import annotations

from typing import Any

from kpay.core.config import MediaSettings
from kpay.core.errors import ApiError

USAGE = "media_usage"


def quota_for(settings: MediaSettings, role: str) -> int:
    return settings.quota_student_bytes if role == "student" else settings.quota_consultant_bytes


class Quotas:
    def __init__(self, store: Any, settings: MediaSettings) -> None:
        self.store, self.settings = store, settings

    @property
    def collection(self) -> Any:
        return self.store[USAGE]

    async def used(self, user_id: str) -> int:
        usage = await self.collection.find_one({"_id": user_id})
        return int((usage or {}).get("committed", 0))

    async def take(self, user_id: str, size: int, quota: int, status: int = 413) -> None:
        """Add ``size`` bytes to the user's count unless that passes ``quota``: then
        ``status`` (413 at the start, 409 at completion) ``quota_exceeded``."""
        if size <= 0:
            await self.give_back(user_id, -size)
            return
        await self.collection.update_one({"_id": user_id}, {"$setOnInsert": {"committed": 0}},
                                         upsert=True)
        taken = await self.collection.update_one(
            {"_id": user_id, "committed": {"$lte": quota - size}}, {"$inc": {"committed": size}})
        if taken.modified_count != 1:
            used = await self.used(user_id)
            raise ApiError(
                f"storage quota exceeded: {used} of {quota} bytes used, {size} more asked",
                code="quota_exceeded", status=status, used=used, quota=quota, size=size)

    async def give_back(self, user_id: str, size: int) -> None:
        """Take ``size`` bytes off the count (a negative size adds, unguarded: undoing)."""
        if size:
            await self.collection.update_one({"_id": user_id}, {"$inc": {"committed": -size}})
