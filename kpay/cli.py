"""The kpay command: serve, plugins, plugin new, token, config check, reconcile, refund."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from kpay.core.errors import ConfigError, PluginError
from kpay.core.workers import parse_workers

DEFAULT_CONFIG = "config/default.toml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kpay", description=__doc__)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="TOML settings file")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=parse_workers, default=None,
                       help="processes on the port: a number, or auto (one per core); "
                            "default [server] workers (1)")
    plugins = commands.add_parser(
        "plugins", help="list the loaded plugins: version, hooks, routes, channels, order kinds")
    plugins.add_argument("--json", action="store_true")
    plugin = commands.add_parser("plugin", help="plugin author tools")
    plugin_commands = plugin.add_subparsers(dest="plugin_command", required=True)
    new = plugin_commands.add_parser("new", help="create a plugin package skeleton")
    new.add_argument("name", help="plugin name: lower-case letters, digits and _")
    new.add_argument("--dir", default=".", help="where to create kpay-<name>/ (default: .)")
    token = commands.add_parser("token", help="print a token for a user")
    token.add_argument("--user", required=True)
    token.add_argument("--role", required=True, choices=["student", "consultant", "admin"])
    token.add_argument("--ttl", type=int, default=None, help="seconds")
    config = commands.add_parser("config", help="configuration tools")
    config.add_argument("action", choices=["check"])
    commands.add_parser("reconcile", help="check the books; exit 1 on any break")
    user = commands.add_parser("user", help="change a user's role, block or unblock them")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    role = user_commands.add_parser("role", help="set the stored role (ends their tokens)")
    role.add_argument("user")
    role.add_argument("role", choices=["student", "consultant", "admin"])
    for name, text in (("block", "refuse every request and socket of theirs"),
                       ("unblock", "let them log in again")):
        action = user_commands.add_parser(name, help=text)
        action.add_argument("user")
    export = user_commands.add_parser(
        "export", help="everything kpay keeps about the user, as JSON (personal data)")
    export.add_argument("user")
    export.add_argument("--out", help="write to this file (default: standard output)")
    anonymise = user_commands.add_parser(
        "anonymise", help="remove the user's identity and free text; money records stay")
    anonymise.add_argument("user")
    anonymise.add_argument("--confirm", required=True, metavar="USER",
                           help="the user id again (a typed confirmation)")
    for parser_ in user_commands.choices.values():
        parser_.add_argument("--reason", default="", help="why (kept in the audit log)")
    audit = commands.add_parser("audit", help="the audit log of operator actions")
    audit.add_argument("--actor")
    audit.add_argument("--target", help="e.g. user:alice")
    audit.add_argument("--action", help="e.g. user.role")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--json", action="store_true")
    attention = commands.add_parser(
        "attention", help="records jobs could not handle (the needs-attention list)")
    attention.add_argument("--all", action="store_true", help="resolved ones too")
    attention.add_argument("--limit", type=int, default=50)
    attention.add_argument("--json", action="store_true")
    attention.add_argument("--resolve", metavar="ID", help="mark an entry resolved")
    attention.add_argument("--by", default="cli", help="who resolves it (with --resolve)")
    attention.add_argument("--note", default="", help="why (with --resolve)")
    add_money_commands(commands)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, PluginError) as e:
        print(f"kpay: {e}", file=sys.stderr)
        return 2


def cmd_serve(args: argparse.Namespace) -> int:
    from kpay.core.serving import main as serve

    return serve(args.config, args.port, args.workers)


def cmd_plugins(args: argparse.Namespace) -> int:
    from kpay.core.app import KPay, load_settings
    from kpay.core.config import var_dir

    settings, pm = load_settings(args.config)

    async def registrations() -> list[dict]:
        # The register_* hooks need an app but no database: the client never connects.
        app = KPay(settings, pm, settings.mongodb.uri or "mongodb://127.0.0.1:1",
                   var_dir=var_dir())
        try:
            await app.register_plugins()
        finally:
            await app.store.close()
        return pm.describe()

    described = asyncio.run(registrations())
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for plugin in described:
        print(f"{plugin['name']} {plugin['version']}")
        for key in ("hooks", "routes", "channels", "order_kinds", "payment_providers",
                    "resources"):
            if plugin.get(key):
                print(f"  {key.replace('_', ' ')}: {', '.join(plugin[key])}")
        for identifier, can in plugin.get("payment_capabilities", {}).items():
            able = [k.replace("_", " ") for k in ("refunds", "partial_refunds", "payouts")
                    if can[k]]
            print(f"  payment provider {identifier}: channels {', '.join(can['channels'])}; "
                  f"can: {', '.join(able) or 'no refunds'}; "
                  f"notify name: {can['url_name'] or '(none: deprecated)'}")
    return 0


def cmd_plugin(args: argparse.Namespace) -> int:
    from kpay.scaffold import create_plugin

    folder = create_plugin(args.name, args.dir)
    print(f"created {folder}")
    print(f"next: cd {folder} && pip install -e . && pytest")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from kpay.core.app import check_startup, load_settings
    from kpay.core.config import var_dir

    settings, pm = load_settings(args.config)
    # What serve refuses before it touches the network: the secrets and every plugin's
    # own start-up check (the wechat_pay merchant). No server, no database connection.
    asyncio.run(check_startup(settings, pm, var_dir()))
    names = ", ".join(p["name"] for p in pm.describe())
    print(f"{args.config}: ok; plugins: {names or 'none'}; "
          f"database: {settings.mongodb.uri or 'embedded (development)'}")
    return 0


def with_store(config: str, work: Callable[[Any, Any], Awaitable[int]]) -> int:
    """Run ``work(store, clock)`` on the deployment's database: the configured one, or
    the embedded one (the running dev server's, if there is one: it is used, never
    stopped). ``clock`` is the app's clock, the dev offset included, so the CLI judges
    time as the server does."""
    from kpay.core import dev_clock
    from kpay.core.app import load_settings
    from kpay.core.clock import Clock
    from kpay.core.store import Store

    settings, _ = load_settings(config)

    async def run(uri: str) -> int:
        store = Store(uri, settings.mongodb.database)
        try:
            clock = await dev_clock.stored_clock(store) if settings.dev.enabled else Clock()
            return await work(store, clock)
        finally:
            await store.close()

    return with_database(settings, run)


def with_database(settings: Any, run: Callable[[str], Awaitable[int]]) -> int:
    """Run ``run(uri)`` with the deployment's database URI: the configured one, or the
    embedded one (the running dev server's, if there is one: used, never stopped)."""
    from kpay.core.store import database_uri

    with database_uri(settings.mongodb) as uri:
        return asyncio.run(run(uri))


def cmd_reconcile(args: argparse.Namespace) -> int:
    from kpay.core.money.reconcile import reconcile

    async def check(store: Any, clock: Any) -> int:
        report = await reconcile(store.db, clock.now())
        print(report.text())
        return 0 if report.clean else 1

    return with_store(args.config, check)


def accounts(name: str) -> Callable[[argparse.Namespace], int]:
    """A command of kpay/cli_accounts.py (tokens, users, audit, attention)."""
    def run(args: argparse.Namespace) -> int:
        from kpay import cli_accounts

        return getattr(cli_accounts, name)(args)
    return run


def add_money_commands(commands: Any) -> None:
    from kpay.cli_money import add_commands

    add_commands(commands)


def money(name: str) -> Callable[[argparse.Namespace], int]:
    """A command of kpay/cli_money.py (refunds)."""
    def run(args: argparse.Namespace) -> int:
        from kpay import cli_money

        return getattr(cli_money, name)(args)
    return run


COMMANDS = {"serve": cmd_serve, "plugins": cmd_plugins, "plugin": cmd_plugin,
            "token": accounts("cmd_token"), "user": accounts("cmd_user"),
            "audit": accounts("cmd_audit"), "attention": accounts("cmd_attention"),
            "config": cmd_config, "reconcile": cmd_reconcile,
            "refund": money("cmd_refund")}

if __name__ == "__main__":
    sys.exit(main())
