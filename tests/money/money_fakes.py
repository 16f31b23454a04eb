"""A throwaway plugin for the money tests: a server-priced order kind and the shared
fake payment provider (kpay.testing.FakeProvider), registered through
``kpay_extra_plugins`` (no feature plugin needed)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field
from pymongo.errors import DuplicateKeyError

from kpay import hookimpl
from kpay.core.errors import Conflict, NotFound
from kpay.core.money.kinds import OrderKind, Priced, parse_item
from kpay.core.money.providers import PaymentProvider
from kpay.testing import FakeProvider

SELLER = "seller1"
# The server's own price list: the client names a sku, never a price.
CATALOG = {"g100": 100, "g250": 250, "g999": 999, "g1": 1, "free": 0, "sold_out": 500}


class GadgetItem(BaseModel):
    kind: str
    sku: str = Field(min_length=1, max_length=32)
    one_per_user: bool = False


class Gadget(OrderKind):
    """``{"kind": "test_gadget", "sku": ...}``: price from CATALOG, paid to SELLER."""

    name = "test_gadget"

    def __init__(self) -> None:
        self.fulfils: Counter[str] = Counter()
        self.failures_left: dict[str, int] = {}
        self.fail_every_first = False
        self.fail_always = False
        self.attempts: Counter[str] = Counter()
        self.released: list[str] = []
        self.refunded: list[tuple[str, int]] = []

    async def price(self, app: Any, user: Any, item: dict[str, Any]) -> Priced:
        parsed = parse_item(GadgetItem, item)
        if parsed.sku not in CATALOG:
            raise NotFound(f"no gadget {parsed.sku}", code="gadget_not_found")
        if parsed.sku == "sold_out":
            raise Conflict("sold out", code="sold_out")
        amount = CATALOG[parsed.sku]
        return Priced(amount, f"gadget {parsed.sku}", app.money.earnings_credits(amount, SELLER),
                      {"kind": self.name, "sku": parsed.sku,
                       "one_per_user": parsed.one_per_user})

    async def reserve(self, app: Any, order: dict[str, Any], session: Any) -> None:
        if not order["item"]["one_per_user"]:
            return
        try:
            await app.store["test_claims"].insert_one(
                {"_id": f"{order['user_id']}:{order['item']['sku']}",
                 "order_id": order["_id"]}, session=session)
        except DuplicateKeyError:
            raise Conflict("you already have one", code="already_owned") from None

    async def release(self, app: Any, order: dict[str, Any]) -> None:
        self.released.append(order["_id"])

    async def fulfil(self, app: Any, order: dict[str, Any]) -> None:
        self.attempts[order["_id"]] += 1
        if self.fail_always:
            raise RuntimeError("fulfilment crashed for good")
        if self.fail_every_first and order["_id"] not in self.failures_left:
            self.failures_left[order["_id"]] = 1
        if self.failures_left.get(order["_id"], 0) > 0:
            self.failures_left[order["_id"]] -= 1
            raise RuntimeError("fulfilment crashed")
        self.fulfils[order["_id"]] += 1

    async def on_refund(self, app: Any, order: dict[str, Any], refund: dict[str, Any]) -> None:
        self.refunded.append((order["_id"], refund["amount"]))


class MoneyTestPlugin:
    def __init__(self) -> None:
        self.kind = Gadget()
        # Settles after 5 minutes, as WeChat Pay does (tests/money/test_money_jobs.py).
        self.provider = FakeProvider("fakepay", ("native", "jsapi", "mweb"),
                                     settle_after=timedelta(minutes=5))
        self.paid: list[str] = []
        self.refunded: list[str] = []

    @hookimpl
    def register_collections(self, app: Any) -> list[str]:
        return ["test_claims"]

    @hookimpl
    def register_order_kinds(self, app: Any) -> list[OrderKind]:
        return [self.kind]

    @hookimpl
    def register_payment_providers(self, app: Any) -> list[PaymentProvider]:
        return [self.provider]

    @hookimpl
    def register_indexes(self, app: Any) -> list:
        return []

    @hookimpl
    def on_order_paid(self, order: dict[str, Any]) -> None:
        self.paid.append(order["_id"])

    @hookimpl
    def on_order_refunded(self, order: dict[str, Any], refund: dict[str, Any]) -> None:
        self.refunded.append(refund["id"])


# -- ordering a gadget through the API -------------------------------------------------

ORDERS = "/api/v1/orders"


async def wallet_order(api: Any, token: str, sku: str = "g100") -> dict[str, Any]:
    """A gadget bought from the wallet (paid at once)."""
    status, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": sku},
                                           "channel": "wallet"}, token)
    assert status == 201, body
    return body["order"]


async def pending_order(api: Any, token: str, sku: str = "g100") -> dict[str, Any]:
    """A gadget ordered through the fake provider, not paid yet."""
    status, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": sku},
                                           "channel": "native"}, token)
    assert status == 201 and body["order"]["status"] == "pending", body
    return body["order"]


async def paid_order(api: Any, token: str, sku: str = "g100",
                     channel: str = "native") -> dict[str, Any]:
    """A gadget ordered through a provider's ``channel`` and paid through the dev route
    (the path a verified notify takes)."""
    status, body = await api.post(ORDERS, {"item": {"kind": "test_gadget", "sku": sku},
                                           "channel": channel}, token)
    assert status == 201, body
    status, body = await api.post(f"/api/v1/dev/orders/{body['order']['id']}/pay",
                                  token=token)
    assert status == 200, body
    return body["order"]
