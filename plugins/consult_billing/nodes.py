"""Which processes of the deployment are alive, for presence across nodes.

Presence entries name a process, not just a node: ``<node_id>#<token>``, a fresh token
per start (a *member*). Each member keeps a record in ``consult_nodes`` with its node's
name, its last beat (``seen_at``, the database server's clock, so clock skew between
nodes does not matter) and the billing time of that beat (``clock_at``).

``seen_at`` is deliberately *not* the app's clock: liveness is about real elapsed
time between processes, which one shared clock (the database's, written with
``$currentDate`` and read with ``server_now``) judges alike for every node, whatever
each node's dev clock says. Billing times (``clock_at``) stay on the app's clock.

A member silent for ``node_timeout_seconds`` is taken as gone by another node: that
node marks the record ``gone`` (a claim), removes the member from every session, then
deletes the record. A member that was only slow finds its record gone on its next beat
and joins again under a new token, recording its sockets again under it; whatever it
wrote late under the old token has no live record and is taken out by the next
``consult_billing.nodes`` run (restarts.py). A member's record is always written
before anything is recorded under it.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument

from plugins.consult_billing.settings import settings_of

if TYPE_CHECKING:
    from kpay.core.app import KPay

NODES = "consult_nodes"


class NodeRegistry:
    """This process's membership; one per app."""

    def __init__(self, app: KPay) -> None:
        self.app = app
        self.member = self._new_member()

    def _new_member(self) -> str:
        return f"{self.app.node_id}#{secrets.token_hex(4)}"

    @property
    def records(self) -> Any:
        return self.app.store[NODES]

    async def join(self, now: datetime) -> None:
        """Record this member as alive (at start, before the server listens)."""
        await self._record(self.member, now)

    async def rejoin(self, now: datetime) -> None:
        """Join under a new token. The record is written before the name is used, so
        nothing is ever recorded under a name without one."""
        member = self._new_member()
        await self._record(member, now)
        self.member = member

    async def _record(self, member: str, now: datetime) -> None:
        await self.records.update_one(
            {"_id": member},
            {"$currentDate": {"seen_at": True},
             "$set": {"node": self.app.node_id, "clock_at": now}}, upsert=True)

    async def beat(self, now: datetime) -> bool:
        """Still alive; False when another node took this member as gone."""
        result = await self.records.update_one(
            {"_id": self.member, "gone": {"$ne": True}},
            {"$currentDate": {"seen_at": True}, "$max": {"clock_at": now}})
        return result.matched_count == 1

    async def server_now(self) -> datetime:
        hello = await self.app.store.client.admin.command("hello")
        return hello["localTime"].replace(tzinfo=UTC)

    async def silent(self) -> list[dict[str, Any]]:
        """Other members not heard from for ``node_timeout_seconds``."""
        timeout = timedelta(seconds=settings_of(self.app).node_timeout_seconds)
        cutoff = await self.server_now() - timeout
        query = {"_id": {"$ne": self.member}, "seen_at": {"$lt": cutoff}}
        return await self.records.find(query).to_list()

    async def known(self, members: set[str]) -> set[str]:
        """Which of ``members`` have a record (alive, or being taken out by whoever
        claimed it, which will mark their absence as of their last beat)."""
        query = {"_id": {"$in": sorted(members)}}
        return {record["_id"] async for record in self.records.find(query, {"_id": 1})}

    async def earlier_selves(self) -> list[dict[str, Any]]:
        """Members of this node from before this start (a crash left them behind)."""
        query = {"node": self.app.node_id, "_id": {"$ne": self.member}}
        return await self.records.find(query).to_list()

    async def claim(self, record: dict[str, Any]) -> bool:
        """Mark a silent member gone; False if it beat since it was read."""
        claimed = await self.records.find_one_and_update(
            {"_id": record["_id"], "seen_at": record["seen_at"]}, {"$set": {"gone": True}},
            return_document=ReturnDocument.AFTER)
        return claimed is not None

    async def drop(self, member: str) -> None:
        await self.records.delete_one({"_id": member})
