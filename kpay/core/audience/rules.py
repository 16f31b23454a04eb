"""Rule kinds: who a behaviour picks out, computed on demand with bounded, indexed
queries (no rollup to keep fresh: a segment's members are asked for when a person
looks at them or sends to them, rarely enough that reading the orders then is cheaper
and never stale). The core's rules read the orders; plugins add theirs with
``register_audience_rules``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kpay.core.audience import PLATFORM
from kpay.core.audience.students import buyers
from kpay.core.errors import BadRequest
from kpay.core.plugins import register_all

if TYPE_CHECKING:
    from kpay.core.app import KPay

Members = Callable[["KPay", str, Any], Awaitable[Iterable[str]]]
#: ``{param: [{"value", "label"}]}``: what a person may pick for a parameter (the owner's
#: courses, say), so the segment builder shows names, never raw ids.
Choices = Callable[["KPay", str], Awaitable[dict[str, list[dict[str, str]]]]]


@dataclass(frozen=True)
class AudienceRule:
    """A kind of rule: ``name`` (snake_case), ``label`` (Chinese, shown in the segment
    builder), ``params`` (a pydantic model of its parameters) and ``members(app, owner,
    params)``, the user ids it picks (``owner`` a consultant's id, or ``"platform"`` for
    operators), at most ``MAX_MEMBERS``. The core keeps a consultant's answer to their
    students whatever a rule returns. ``choices(app, owner)``, when given, lists the
    values a person may pick for parameters that name things."""

    name: str
    label: str
    params: type[BaseModel]
    members: Members
    choices: Choices | None = None


class SpentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int = Field(ge=1, le=100_000_000, description="fen")
    days: int = Field(ge=1, le=366)


class DaysParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: int = Field(ge=1, le=366)


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def days_ago(app: KPay, days: int) -> datetime:
    """The start of the local day ``days - 1`` days before today ([server] timezone):
    "the last 7 days" are today and the 6 before it."""
    zone = ZoneInfo(app.settings.server.timezone)
    local = app.clock.now().astimezone(zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    return start


def scope(owner: str) -> str | None:
    return None if owner == PLATFORM else owner


async def spent_at_least(app: KPay, owner: str, params: SpentParams) -> set[str]:
    spent = await buyers(app, scope(owner), days_ago(app, params.days))
    return {u for u, seen in spent.items() if seen["spent"] >= params.amount}


async def inactive_for(app: KPay, owner: str, params: DaysParams) -> set[str]:
    recent = await buyers(app, scope(owner), days_ago(app, params.days))
    return set(await buyers(app, scope(owner))) - set(recent)


async def bought(app: KPay, owner: str, params: NoParams) -> set[str]:
    return set(await buyers(app, scope(owner)))


CORE_RULES = [
    AudienceRule("spent_at_least", "近期消费满额", SpentParams, spent_at_least),
    AudienceRule("inactive_for", "近期未消费", DaysParams, inactive_for),
    AudienceRule("bought_anything", "购买过", NoParams, bought),
]


async def rule_kinds(app: KPay) -> dict[str, AudienceRule]:
    """The core's rules and the plugins' (``register_audience_rules``), by name; read
    once per app."""
    holder: dict[str, AudienceRule] = app.plugin_state("core.audience.rules", dict)
    if not holder:
        for rule in [*CORE_RULES, *await register_all(app.pm, "register_audience_rules", app)]:
            if rule.name in holder:
                raise ValueError(f"two audience rules are named {rule.name!r}")
            holder[rule.name] = rule
    return holder


async def check_rule(app: KPay, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The rule's parameters validated (400 ``invalid_rule`` otherwise), as stored."""
    rule = (await rule_kinds(app)).get(name)
    if rule is None:
        raise BadRequest(f"no audience rule {name!r}", code="invalid_rule", field="rule")
    try:
        return rule.params.model_validate(params).model_dump()
    except ValidationError as e:
        raise BadRequest(f"rule {name}: {e.errors()[0]['msg']}", code="invalid_rule",
                         field="params") from None


async def rule_members(app: KPay, owner: str, name: str, params: dict[str, Any]) -> set[str]:
    rule = (await rule_kinds(app))[name]
    return {str(u) for u in await rule.members(app, owner, rule.params.model_validate(params))}


def params_schema(rule: AudienceRule) -> dict[str, Any]:
    return rule.params.model_json_schema()
