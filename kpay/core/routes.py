"""The core's own routes: health, metrics, OpenAPI, identity, plugins, dev tools."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import prometheus_client
from pydantic import BaseModel, Field

from kpay.core import metrics, openapi, responses, search_routes
from kpay.core.account_routes import account_routes
from kpay.core.admin.routes import admin_user_routes
from kpay.core.analytics.routes import analytics_routes
from kpay.core.audience.routes import audience_routes
from kpay.core.dev_routes import dev_tool_routes
from kpay.core.media.routes import media_routes
from kpay.core.money.admin_routes import admin_money_routes
from kpay.core.money.payout_routes import payout_routes
from kpay.core.money.routes import money_routes
from kpay.core.money.statements import statement_routes
from kpay.core.notification_routes import notification_routes
from kpay.core.posters import poster_routes
from kpay.core.users import issue_token
from kpay.core.web import BaseHandler, Route, api

if TYPE_CHECKING:
    from kpay.core.app import KPay


class HealthHandler(BaseHandler):
    @api("Liveness and database reachability", auth=False, response=responses.Health,
         responses={503: responses.Health})
    async def get(self) -> None:
        database = await self.kpay.store.ping()
        self.write_json({"ok": database, "database": "up" if database else "down",
                         "sockets": len(self.kpay.sockets), "node": self.kpay.node_id},
                        200 if database else 503)


class MetricsHandler(BaseHandler):
    @api("Prometheus metrics (text format)", auth=False, media_type="text/plain")
    def get(self) -> None:
        self.set_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
        self.finish(metrics.exposition())


class OpenApiHandler(BaseHandler):
    @api("This OpenAPI document", auth=False, response=responses.OpenApiDocument)
    def get(self) -> None:
        pages = Path(self.kpay.settings.server.static_path).is_dir()
        self.write_json(openapi.document(self.kpay.routes, pages=pages))


class PluginsHandler(BaseHandler):
    @api("Loaded plugins with their versions and hooks", roles=("admin",),
         response=responses.PluginList)
    def get(self) -> None:
        self.require_user("admin")
        self.write_json({"plugins": self.kpay.pm.describe()})


class DevLogin(BaseModel):
    user_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    role: Literal["student", "consultant", "admin"]
    name: str | None = Field(None, max_length=64)


class DevLoginHandler(BaseHandler):
    @api("Dev mode: log in as anyone", body=DevLogin, auth=False,
         response=responses.DevLoginResult)
    async def post(self) -> None:
        login = self.body(DevLogin)
        # Without a name, a nickname the user set (PATCH /api/v1/me) is kept.
        user = await self.kpay.users.sign_in(login.user_id, login.role, login.name)
        token = issue_token(self.kpay.tokens, user)
        self.write_json({"token": token, "user": {"id": login.user_id, "role": login.role,
                                                  "name": user.get("name") or login.user_id}})


class ClockAdvance(BaseModel):
    advance: float = Field(gt=0, le=366 * 24 * 3600)


class DevClockHandler(BaseHandler):
    # Open: pages ask it before anyone logs in, to learn whether dev mode is on
    # (static/js/kpay.js devEnabled; docs/pages.md).
    @api("Dev mode: the server clock", auth=False, response=responses.ClockState)
    def get(self) -> None:
        self.write_json({"now": self.kpay.clock.now().isoformat(),
                         "offset": self.kpay.clock.offset})

    @api("Dev mode: move the server clock forward and run due jobs", body=ClockAdvance,
         response=responses.ClockState)
    async def post(self) -> None:
        self.require_user()
        change = self.body(ClockAdvance)
        await self.kpay.advance_clock(change.advance)
        self.write_json({"now": self.kpay.clock.now().isoformat(),
                         "offset": self.kpay.clock.offset})


def core_routes(app: KPay) -> list[Route]:
    routes = [
        Route("/healthz", HealthHandler, tags=("core",)),
        Route("/metrics", MetricsHandler, tags=("core",)),
        Route("/api/v1/openapi.json", OpenApiHandler, tags=("core",)),
        Route("/api/v1/plugins", PluginsHandler, tags=("core",)),
        *search_routes.routes(),
        *account_routes(),
        *money_routes(app),
        *admin_money_routes(),
        *statement_routes(),
        *payout_routes(app),
        *poster_routes(),
        *notification_routes(),
        *media_routes(app),
        *admin_user_routes(),
        *audience_routes(),
    ]
    routes += analytics_routes()
    if app.dev:
        routes += [
            Route("/api/v1/dev/login", DevLoginHandler, tags=("dev",)),
            Route("/api/v1/dev/clock", DevClockHandler, tags=("dev",)),
            *dev_tool_routes(),
        ]
    return routes
