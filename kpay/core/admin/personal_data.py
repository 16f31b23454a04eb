"""A user's personal data (PIPL, docs/operations.md "Personal data"): export everything
kpay keeps about them, and anonymise them.

Anonymisation removes identity and free text, never money: orders, refunds, payouts
and ledger entries keep their amounts and the user id, which is then an opaque key
with no name, openid, avatar or real name behind it. The books must still balance
and be auditable (accounting records are kept for years by law), and a ledger entry
is never edited. Both are idempotent: a second run finds nothing more to remove.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kpay.core.admin.parts import plugin_parts
from kpay.core.errors import ApiError, BadRequest
from kpay.core.money import accounts
from kpay.core.money.orders import public as public_order
from kpay.core.notifications import public as public_notification
from kpay.core.sessions import enforce_standing

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: What an anonymised user is called.
ANONYMOUS_NAME = "已注销用户"
#: Records of one kind an export holds at most (a bound on one answer's size).
MAX_EXPORT = 5000
#: Fields of the users document that are identity, removed by anonymisation.
IDENTITY_FIELDS = ("avatar_media_id", "openid", "wechat_nickname", "real_name",
                   "real_name_set_at")
#: Fields of the users document that are session bookkeeping, not personal data.
INTERNAL_FIELDS = ("revoked_tokens", "token_version", "standing_changed_at")


async def export_user(app: KPay, user_id: str) -> dict[str, Any]:
    """Everything kpay keeps about ``user_id``, as JSON-ready data: the core's records
    and each plugin's (hook ``export_user_data``, by plugin name). 404
    ``user_not_found``; a failing plugin fails the export (it must not look complete)."""
    doc = await app.users.get(user_id)
    user = {key: value for key, value in doc.items() if key not in INTERNAL_FIELDS}
    user["id"] = user.pop("_id")

    async def listed(collection: Any, query: dict[str, Any], shown: Any,
                     sort: str = "created_at") -> list[Any]:
        cursor = collection.find(query).sort(sort, -1).limit(MAX_EXPORT)
        return [shown(one) async for one in cursor]

    ledger = app.money.ledger
    return {
        "user": user,
        "exported_at": app.clock.now(),
        "orders": await listed(app.money.orders.collection, {"user_id": user_id},
                               public_order),
        "refunds": await listed(app.money.orders.refunds, {"user_id": user_id},
                                without_internal),
        "wallet": {**await ledger.wallet(user_id),
                   "entries": await ledger.entries_of(accounts.wallet(user_id), MAX_EXPORT)},
        "earnings": {"balance": await ledger.balance(accounts.earnings(user_id)),
                     "entries": await ledger.entries_of(accounts.earnings(user_id),
                                                        MAX_EXPORT)},
        "following": await listed(app.follows.collection, {"follower_id": user_id},
                                  lambda f: {"user_id": f["followee_id"], "at": f["at"]},
                                  "at"),
        "followers": await app.follows.followers(user_id),
        "notifications": await listed(app.notifications.collection, {"user_id": user_id},
                                      public_notification),
        "media": await listed(app.media.collection, {"owner_id": user_id},
                              app.media.public),
        "audit": await app.audit.list(target=f"user:{user_id}", limit=MAX_EXPORT),
        "plugins": await plugin_parts(app, "export_user_data", user_id, fail_closed=True),
    }


def without_internal(doc: dict[str, Any]) -> dict[str, Any]:
    return {("id" if key == "_id" else key): value for key, value in doc.items()}


async def anonymise_user(app: KPay, user_id: str, confirm: str, *, actor: str,
                         source: str) -> dict[str, Any]:
    """Remove ``user_id``'s identity (see the module's docstring), end their tokens and
    sockets, and let each plugin remove its free text (hook ``anonymise_user``, fail
    closed: run it again after a failure). ``confirm`` must be the user id (400
    ``confirm_mismatch``). Audited as ``user.anonymise``. Returns what was removed."""
    if confirm != user_id:
        raise BadRequest("confirm must repeat the user id", code="confirm_mismatch",
                         field="confirm")
    doc = await app.users.get(user_id)
    removed = sorted(field for field in IDENTITY_FIELDS if doc.get(field))
    now = app.clock.now()
    await app.users.collection.update_one(
        {"_id": user_id},
        {"$set": {"name": ANONYMOUS_NAME, "anonymised_at": doc.get("anonymised_at") or now},
         "$unset": dict.fromkeys(IDENTITY_FIELDS, "")})
    await app.users.log_out_everywhere(user_id)  # every token ends, on every device
    if doc.get("avatar_media_id"):
        await take_down(app, doc["avatar_media_id"], actor, source)
    follows = await app.follows.collection.delete_many(
        {"$or": [{"follower_id": user_id}, {"followee_id": user_id}]})
    notifications = await app.notifications.collection.delete_many({"user_id": user_id})
    await rename_in_search(app, user_id)
    plugins = await plugin_parts(app, "anonymise_user", user_id, fail_closed=True)
    await enforce_standing(app, [user_id])
    summary = {"identity": removed, "follows": follows.deleted_count,
               "notifications": notifications.deleted_count, "plugins": plugins}
    await app.audit.record(actor, "user.anonymise", f"user:{user_id}", source=source,
                           removed=removed, follows=follows.deleted_count,
                           notifications=notifications.deleted_count)
    return summary


#: Storefront listings of one author renamed at most (a bound on one anonymisation).
MAX_LISTINGS = 1000


async def rename_in_search(app: KPay, user_id: str) -> None:
    """The user's storefront listings (rooms, courses, consultant card) name them
    已注销用户, and their old nickname no longer finds them."""
    listings = await app.search.collection.find({"author_id": user_id}).limit(
        MAX_LISTINGS).to_list()
    for item in listings:
        await app.search.put(item["kind"], item["item_id"], title=item["title"],
                             author_id=user_id, author_name=ANONYMOUS_NAME,
                             category=item.get("category"), cover_url=item.get("cover_url"),
                             extra=item.get("extra"), visible=item.get("visible", True))


async def take_down(app: KPay, media_id: str, actor: str, source: str) -> None:
    """Stop serving the old avatar (its files stay for an inquiry, as any takedown's)."""
    try:
        await app.media.takedown(media_id, actor=actor, reason="user anonymised",
                                 source=source)
    except ApiError:
        pass  # already gone: nothing left to serve
