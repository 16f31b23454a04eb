"""The kpay command: serve, plugins, plugin new, token, config check, reconcile."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from kpay.core.errors import ConfigError, PluginError

DEFAULT_CONFIG = "config/default.toml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kpay", description=__doc__)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="TOML settings file")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--port", type=int, default=None)
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
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, PluginError) as e:
        print(f"kpay: {e}", file=sys.stderr)
        return 2


def cmd_serve(args: argparse.Namespace) -> int:
    from kpay.core.app import main as serve

    serve(args.config, args.port)
    return 0


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
        for key in ("hooks", "routes", "channels", "order_kinds", "payment_providers"):
            if plugin.get(key):
                print(f"  {key.replace('_', ' ')}: {', '.join(plugin[key])}")
    return 0


def cmd_plugin(args: argparse.Namespace) -> int:
    from kpay.scaffold import create_plugin

    folder = create_plugin(args.name, args.dir)
    print(f"created {folder}")
    print(f"next: cd {folder} && pip install -e . && pytest")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from kpay.core.app import load_settings
    from kpay.core.auth import TokenService, resolve_secret
    from kpay.core.clock import Clock
    from kpay.core.config import var_dir

    settings, _ = load_settings(args.config)
    secret = resolve_secret(settings.auth, settings.dev.enabled, var_dir())
    print(TokenService(settings.auth, secret, Clock()).issue(args.user, args.role, args.ttl))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from kpay.core.app import load_settings

    settings, pm = load_settings(args.config)
    names = ", ".join(p["name"] for p in pm.describe())
    print(f"{args.config}: ok; plugins: {names or 'none'}; "
          f"database: {settings.mongodb.uri or 'embedded (development)'}")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from kpay.core.app import load_settings
    from kpay.core.clock import Clock
    from kpay.core.money.reconcile import reconcile
    from kpay.core.store import EmbeddedMongo, Store

    settings, _ = load_settings(args.config)
    embedded = None
    uri = settings.mongodb.uri
    if not uri:
        embedded = EmbeddedMongo(settings.mongodb.embedded_path, settings.mongodb.embedded_command)
        uri = embedded.start()

    async def run() -> int:
        store = Store(uri, settings.mongodb.database)
        try:
            report = await reconcile(store.db, Clock().now())
        finally:
            await store.close()
        print(report.text())
        return 0 if report.clean else 1

    try:
        return asyncio.run(run())
    finally:
        if embedded is not None:
            embedded.stop()


COMMANDS = {"serve": cmd_serve, "plugins": cmd_plugins, "plugin": cmd_plugin,
            "token": cmd_token,
            "config": cmd_config, "reconcile": cmd_reconcile}

if __name__ == "__main__":
    sys.exit(main())
