"""CLI commands on money: ``kpay refund`` (docs/operations.md, "Refunding an order").

A refund needs the whole app (the order kinds undo what was bought, the payment
providers pay money back), so the command builds one on the deployment's database, as
``kpay user`` attaches to it, without serving. What it does is in the audit log with
the actor ``cli:<login name>``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kpay.cli import with_database
from kpay.cli_accounts import actor, report_errors

if TYPE_CHECKING:
    from kpay.core.app import KPay


def add_commands(commands: Any) -> None:
    refund = commands.add_parser(
        "refund", help="refund a paid order (or, with --attention, a payment that arrived "
                       "after its order was closed)")
    refund.add_argument("order", nargs="?", help="the order's id")
    refund.add_argument("amount", nargs="?", type=int, help="fen to refund")
    refund.add_argument("--reason", default="", help="why (kept with the refund and in the "
                                                     "audit log)")
    refund.add_argument("--to", choices=["original", "wallet"], default="original")
    refund.add_argument("--purpose", choices=["revoke", "adjust"], default=None,
                        help="take back what was bought, or only adjust the price "
                             "(default: revoke when refunding all that is left)")
    refund.add_argument("--key", default=None, help="idempotency key: the same key again "
                                                    "returns the first refund")
    refund.add_argument("--attention", metavar="ID",
                        help="refund in full the order of this needs-attention entry "
                             "(paid after close) and resolve it")


def with_app(config: str, work: Callable[[KPay], Awaitable[int]]) -> int:
    """Run ``work(app)`` with an app on the deployment's database: plugins registered,
    the dev clock as the server has it, nothing served and no jobs run."""
    from kpay.core import dev_clock
    from kpay.core.app import KPay, load_settings
    from kpay.core.clock import Clock
    from kpay.core.config import var_dir
    from kpay.core.store import Store

    settings, pm = load_settings(config)

    async def run(uri: str) -> int:
        clock = Clock()
        if settings.dev.enabled:
            store = Store(uri, settings.mongodb.database)
            try:
                clock = await dev_clock.stored_clock(store)
            finally:
                await store.close()
        app = KPay(settings, pm, uri, var_dir=var_dir(), clock=clock)
        try:
            await app.register_plugins()
            await app.broker.start()
            return await work(app)
        finally:
            await app.broker.stop()
            await app.store.close()

    return with_database(settings, run)


def cmd_refund(args: argparse.Namespace) -> int:
    from kpay.core.money.operator import refund_order, refund_paid_after_close

    if args.attention:
        if args.order or args.amount is not None:
            print("kpay: with --attention give no order or amount: the whole payment is "
                  "refunded", file=sys.stderr)
            return 2
    elif not args.order or args.amount is None or not args.reason.strip():
        print("kpay: usage: kpay refund ORDER AMOUNT --reason WHY [--to wallet|original]",
              file=sys.stderr)
        return 2

    async def run(app: KPay) -> int:
        if args.attention:
            refund, entry = await refund_paid_after_close(
                app, actor(), "cli", args.attention, args.reason.strip(), key=args.key)
            print(f"{entry['id']}: {entry['status']}")
        else:
            refund = await refund_order(app, actor(), "cli", args.order, args.amount,
                                        args.reason.strip(), to=args.to,
                                        purpose=args.purpose, key=args.key)
        print(f"refund {refund['_id']} of order {refund['order_id']}: {refund['amount']} fen "
              f"to {refund['to']}, {refund['status']}")
        return 0 if refund["status"] == "succeeded" else 1

    return report_errors(lambda: with_app(args.config, run))
