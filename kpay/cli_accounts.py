"""CLI commands on accounts and operations: token, user, audit, attention.

Each works on the deployment's database (``kpay.cli.with_store``); what changes a user
is written to the audit log with the actor ``cli:<login name>``, and takes effect on
running servers at once with the redis broker (the command line sends them the control
message a node would, docs/websocket.md "Presence across nodes"), and in any case
within ``[auth] standing_cache_seconds`` (docs/operations.md)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from kpay.cli import with_store
from kpay.core.errors import ApiError


def actor() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def report_errors(run: Any) -> int:
    try:
        return run()
    except ApiError as e:
        print(f"kpay: {e.message}", file=sys.stderr)
        return 1


def cmd_token(args: argparse.Namespace) -> int:
    """A token for a stored user; refused when the stored role is another (a user who
    does not exist yet is created with the role)."""
    from kpay.core.app import load_settings
    from kpay.core.auth import TokenService, resolve_secret
    from kpay.core.config import var_dir
    from kpay.core.users import Users, issue_token

    settings, _ = load_settings(args.config)
    secret = resolve_secret(settings.auth, settings.dev.enabled, var_dir())

    async def run(store: Any, clock: Any) -> int:
        user = await Users(store, clock, 0).collection.find_one({"_id": args.user})
        if user is None:
            print(f"kpay: no user {args.user}; create one with: kpay user role {args.user} "
                  f"{args.role}", file=sys.stderr)
            return 2
        if user.get("role") != args.role:
            print(f"kpay: {args.user} is stored as {user.get('role')}, not {args.role}; "
                  f"change it with: kpay user role {args.user} {args.role}", file=sys.stderr)
            return 2
        if user.get("blocked"):
            print(f"kpay: {args.user} is blocked (kpay user unblock {args.user})",
                  file=sys.stderr)
            return 2
        print(issue_token(TokenService(settings.auth, secret, clock), user, args.ttl))
        return 0

    return with_store(args.config, run)


def cmd_user(args: argparse.Namespace) -> int:
    from kpay.core.audit import AuditLog
    from kpay.core.users import Users

    if args.user_command in ("export", "anonymise"):
        return cmd_personal_data(args)

    async def run(store: Any, clock: Any) -> int:
        users = Users(store, clock, 0)
        before: dict[str, Any] = {}
        if args.user_command == "role" and await users.collection.find_one(
                {"_id": args.user}, {"_id": 1}) is None:
            # The first admin of a fresh deployment: created here, then `kpay token`.
            await users.ensure(args.user, args.role)
        else:
            before = await users.get(args.user)
        if args.user_command == "role":
            user = await users.set_role(args.user, args.role)
            details = {"before": before.get("role"), "after": args.role}
        else:
            user = await users.set_blocked(args.user, args.user_command == "block")
            details = {}
        await AuditLog(store, clock).record(actor(), f"user.{args.user_command}",
                                            f"user:{args.user}", reason=args.reason,
                                            source="cli", **details)
        state = "blocked" if user.get("blocked") else "active"
        print(f"{args.user}: {user.get('role')}, {state}; earlier tokens ended")
        await tell_servers(args.config, args.user)
        return 0

    return report_errors(lambda: with_store(args.config, run))


async def tell_servers(config: str, user_id: str) -> None:
    """With the redis broker, ask every running node to check the user's sockets now;
    otherwise (or if Redis cannot be reached) they notice at their next poll."""
    from kpay.core.app import load_settings
    from kpay.core.realtime.redis_broker import send_command
    from kpay.core.sessions import STANDING_CHANGED

    realtime = load_settings(config)[0].realtime
    if realtime.broker != "redis":
        return
    try:
        await send_command(realtime.redis_url, realtime.redis_prefix, STANDING_CHANGED,
                           {"user_ids": [user_id]}, actor())
    except Exception as e:
        print(f"kpay: could not tell the running servers through redis ({e}); they "
              "notice within [auth] standing_cache_seconds", file=sys.stderr)


def cmd_audit(args: argparse.Namespace) -> int:
    from kpay.core.audit import AuditLog

    async def run(store: Any, clock: Any) -> int:
        records = await AuditLog(store, clock).list(
            actor=args.actor, target=args.target, action=args.action, limit=args.limit)
        if args.json:
            print(json.dumps(records, ensure_ascii=False, indent=2))
            return 0
        for r in records:
            reason = f"  ({r['reason']})" if r["reason"] else ""
            print(f"{r['at'][:19]}  {r['actor']:<16} {r['action']:<18} {r['target']}"
                  f"  from {r['source'] or '-'}{reason}")
        if not records:
            print("no audit records")
        return 0

    return with_store(args.config, run)


def cmd_attention(args: argparse.Namespace) -> int:
    """List the needs-attention entries, or resolve one (``--resolve ID``)."""
    from kpay.core.attention import Attention
    from kpay.core.audit import AuditLog

    async def run(store: Any, clock: Any) -> int:
        attention = Attention(store, clock)
        if args.resolve:
            entry = await attention.resolve(args.resolve, args.by, args.note)
            await AuditLog(store, clock).record(
                actor(), "attention.resolve", f"attention:{entry['id']}", reason=args.note,
                source="cli", subject=entry["subject"])
            print(f"{entry['id']}: resolved")
            return 0
        entries = await attention.list(None if args.all else "open", args.limit)
        if args.json:
            print(json.dumps(entries, ensure_ascii=False, indent=2))
            return 0
        if not entries:
            print("nothing needs attention" if not args.all else "no entries")
            return 0
        for e in entries:
            print(f"{e['id']}  {e['status']:<8} {e['last_seen_at'][:19]}  x{e['count']:<4} "
                  f"{e['source']}  {e['subject']}")
            print("    " + e["error"].strip().splitlines()[-1][:200])
        return 0

    return report_errors(lambda: with_store(args.config, run))


def cmd_personal_data(args: argparse.Namespace) -> int:
    """``kpay user export U [--out FILE]`` and ``kpay user anonymise U --confirm U``: the
    admin routes' work (kpay/core/admin/personal_data.py), with the plugins loaded;
    audited with the actor ``cli:<login name>``."""
    from kpay.cli_money import with_app
    from kpay.core.admin.personal_data import anonymise_user, export_user
    from kpay.core.jsonio import json_default

    exported: list[str] = []

    async def run(app: Any) -> int:
        if args.user_command == "anonymise":
            done = await anonymise_user(app, args.user, args.confirm, actor=actor(),
                                        source="cli")
            print(f"{args.user}: anonymised; removed {', '.join(done['identity']) or 'nothing'}"
                  f", {done['follows']} follow(s), {done['notifications']} notification(s)")
            return 0
        data = await export_user(app, args.user)
        await app.audit.record(actor(), "user.export", f"user:{args.user}", source="cli")
        exported.append(json.dumps(data, ensure_ascii=False, indent=2, default=json_default))
        return 0

    code = report_errors(lambda: with_app(args.config, run))
    if exported and args.out:
        Path(args.out).write_text(exported[0] + "\n", encoding="utf-8")
        print(f"{args.user}: written to {args.out}", file=sys.stderr)
    elif exported:
        print(exported[0])
    return code
