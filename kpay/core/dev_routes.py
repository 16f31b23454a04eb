"""Dev mode tools for trying kpay from its pages (the dev panel, static/js/devpanel.js):
put the clock back to real time, wipe the data people made while trying it.

Served only when ``[dev] enabled`` is on (kpay/core/routes.py adds them then; every
other deployment answers 404). See docs/pages.md "The dev panel".
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from kpay.core import dev_clock, responses
from kpay.core.web import BaseHandler, Route, api

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.dev")

#: Folders under var/ that hold generated files to drop with the data (they are
#: caches and uploads of the wiped data; the dev secret and the database stay).
DEV_FILE_DIRS = ("posters",)


class ClockReset(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataReset(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"confirm": "reset"}})

    #: Spelled out, so a stray POST cannot wipe everything.
    confirm: Literal["reset"]


class DataResetResult(BaseModel):
    collections: int
    documents: int


class DevClockResetHandler(BaseHandler):
    @api("Dev mode: put the server clock back to real time", body=ClockReset,
         response=responses.ClockState)
    async def post(self) -> None:
        self.require_user()
        self.body(ClockReset)
        app = self.kpay
        app.clock.reset()
        await dev_clock.remember(app)
        self.write_json({"now": self.kpay.clock.now().isoformat(),
                         "offset": self.kpay.clock.offset})


class DevDataResetHandler(BaseHandler):
    @api("Dev mode: delete every document of this deployment's database (indexes stay)",
         body=DataReset, response=DataResetResult)
    async def post(self) -> None:
        user = self.require_user()
        self.body(DataReset)
        collections, documents = await wipe_data(self.kpay)
        log.warning("dev: %s wiped the data: %d documents in %d collections",
                    user.id, documents, collections)
        self.write_json({"collections": collections, "documents": documents})


async def wipe_data(app: KPay) -> tuple[int, int]:
    """Delete every document (keeping collections and indexes, so unique keys still
    hold), keep the dev clock where it is, and drop generated files of the old data."""
    db = app.store.db
    names = sorted(name for name in await db.list_collection_names()
                   if not name.startswith("system."))
    documents = 0
    for name in names:
        documents += (await db[name].delete_many({})).deleted_count
    await dev_clock.remember(app)
    # The users' cached standings expire by themselves within [auth]
    # standing_cache_seconds; the page that asked logs out at once.
    for folder in DEV_FILE_DIRS:
        shutil.rmtree(Path(app.var_dir) / folder, ignore_errors=True)
    return len(names), documents


def dev_tool_routes() -> list[Route]:
    return [
        Route("/api/v1/dev/clock/reset", DevClockResetHandler, tags=("dev",)),
        Route("/api/v1/dev/reset", DevDataResetHandler, tags=("dev",)),
    ]
