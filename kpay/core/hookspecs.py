"""The whole plugin contract of kpay.

Every hook is an empty function with a docstring: when it is called, what it gets,
what it returns. An implementation takes only the arguments it needs, by name.
Any hook except ``register_settings`` may return an awaitable instead of a value;
kpay awaits it.

Families:
- ``register_*`` returns a list of things to add; results of all plugins are joined.
- ``on_*`` is a notification; its return value is ignored.

Failure policy (each hook's docstring repeats its own, under "On failure"):
``register_*`` hooks run at start-up, where an exception stops the server with a
``PluginError`` naming the plugin and the hook, in every mode. ``on_*``
notifications are isolated: an exception is logged with the plugin's name and the
other plugins still run (in dev mode it is re-raised so a bug cannot hide). Money
decisions never go through notifications: order kinds and payment providers fail
closed (the request fails, nothing moves). There are no ``firstresult`` hooks yet; one
added later must fail closed too (its caller gets the error, no default is guessed).
"""

from __future__ import annotations

import pluggy

PROJECT = "kpay"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------
# Settings (called before the app exists)
# ---------------------------------------------------------------------------


@hookspec
def register_settings():
    """Declare the plugin's config sections.

    Called once at start-up, before the configuration is validated, so it receives
    no app. Return a list of ``(section_name, pydantic_model)``; the section
    ``[section_name]`` of the TOML file (and ``KPAY_<SECTION>__<KEY>`` variables) is
    validated by the model and is then ``app.settings.<section_name>``. A bad value
    stops start-up naming the section and key. This hook runs before the event loop,
    so unlike the others it must return the list itself, not an awaitable.

    On failure: start-up stops with a ``PluginError`` naming the plugin (every mode).
    """


# ---------------------------------------------------------------------------
# Start-up registrations (called once, after settings, before serving)
# ---------------------------------------------------------------------------


@hookspec
def register_routes(app):
    """Add HTTP routes.

    ``app`` is the :class:`kpay.core.app.KPay` instance. Return a list of
    :class:`kpay.core.web.Route`; paths use ``{name}`` placeholders, which reach the
    handler as keyword arguments and appear in the OpenAPI document.

    On failure: start-up stops with a ``PluginError`` naming the plugin (every mode).
    """


@hookspec
def register_channels(app):
    """Own socket channel prefixes.

    Return a list of :class:`kpay.core.realtime.channels.ChannelRule`. A rule owns
    every channel ``<prefix>:<id>`` and decides who may subscribe and what clients
    may publish there. The core owns ``user:<id>``; two rules for one prefix stop
    start-up.

    On failure: start-up stops with a ``PluginError`` naming the plugin (every mode).
    """


@hookspec
def register_order_kinds(app):
    """Add kinds of things that can be bought.

    Return a list of :class:`kpay.core.money.kinds.OrderKind`. A kind validates the
    item and resolves its price on the server, and fulfils a paid order exactly once.
    Two kinds with one name stop start-up.

    On failure: start-up stops with a ``PluginError`` naming the plugin
    when the hook raises. At request time a kind's ``price``/``reserve`` that raises
    fails the request closed: nothing is written, nothing is charged; a ``fulfil``
    that raises leaves the order ``paid`` for the ``money.fulfil_paid`` job to retry.
    """


@hookspec
def register_payment_providers(app):
    """Add payment providers.

    Return a list of :class:`kpay.core.money.providers.PaymentProvider` instances, each
    naming the order channels it serves (``jsapi``, ``mweb``, ``native`` ...). The core
    keeps the order state; a provider only talks to the outside payment system.

    On failure: start-up stops with a ``PluginError`` naming the plugin
    when the hook raises. At request time a provider that raises
    ``PaymentProviderError`` fails closed: the order is closed unpaid, nothing moves.
    """


@hookspec
def register_price_adjusters(app):
    """Add price adjusters: coupons, membership discounts, promotions.

    Return a list of :class:`kpay.core.money.adjustments.PriceAdjuster`. Each is asked
    when an order of an ``adjustable`` kind is priced, and when a consultation is
    accepted (its per-minute rate), with what the buyer sent under ``adjust.<name>``.
    Its reservation is taken in the order's transaction and given back when an unpaid
    order closes or a paid one is fully refunded (docs/money.md, "Price adjustments").
    Two adjusters with one name stop start-up.

    On failure: start-up stops with a ``PluginError`` naming the plugin when the hook
    raises. At request time an adjuster that raises fails the request closed: nothing
    is written, nothing is charged.
    """


@hookspec
def register_indexes(app):
    """Declare MongoDB indexes.

    Return a list of :class:`kpay.core.store.IndexSpec`. They are created at start-up
    (creating an existing index is a no-op), before any route is served.

    On failure: start-up stops with a ``PluginError`` naming the plugin (every mode).
    """


@hookspec
def register_jobs(app):
    """Add periodic sweep jobs.

    Return a list of :class:`kpay.core.scheduler.PeriodicJob`. Each job runs every
    ``seconds`` and when the dev clock is advanced; it must read time from
    ``app.clock`` and be safe to run twice or on two nodes at once. Prefer one job
    that sweeps everything due (through an index) over one job per user.

    Of all workers and nodes, one runs a job per period (a lease on the database's
    clock); a node that dies mid-run is replaced after the job's ``lease_seconds``
    by a fresh run, and so is a run still going after ``max_run_seconds`` (default an
    hour), so a job must still be a sweep (docs/operations.md, "Job leases").

    On failure: start-up stops with a ``PluginError`` naming the plugin (every mode).
    A job run that raises is logged with the job's name (``<plugin>.<job>`` by
    convention) and counted in the metrics; the server and the other jobs go on.
    """


# ---------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------


@hookspec
def on_startup(app):
    """Called once when the server has its database and before it accepts requests.

    Use it to recover state after a restart. The return value is ignored.

    On failure: logged with the plugin's name; the other plugins are still called
    and the server goes on. In dev mode the exception is re-raised to the caller.
    """


@hookspec
def on_shutdown(app):
    """Called once when the server stops, before the database is closed.

    On failure: logged with the plugin's name; the other plugins are still called
    and the server goes on. In dev mode the exception is re-raised to the caller.
    """


# ---------------------------------------------------------------------------
# Notifications
# ---------------------------------------------------------------------------


@hookspec
def on_order_paid(app, order):
    """Called after an order became ``paid`` and was fulfilled by its kind.

    ``order`` is the order document (a dict, amounts in fen). Called once per order,
    whichever path paid it (wallet, notify, reconciliation, dev simulator).

    On failure: logged with the plugin's name; the other plugins are still called
    and the server goes on. In dev mode the exception is re-raised to the caller.
    """


@hookspec
def on_order_refunded(app, order, refund):
    """Called after a refund of ``order`` succeeded.

    ``refund`` is the refund record: ``{"id", "amount", "reason", "to"}`` with ``to``
    either ``"wallet"`` or the payment channel.

    On failure: logged with the plugin's name; the other plugins are still called
    and the server goes on. In dev mode the exception is re-raised to the caller.
    """


@hookspec
def on_presence(app, channel, user_id, present):
    """Called when a user's first socket joins (``present=True``) or last socket leaves
    (``present=False``) channel ``channel`` on this node.

    On failure: logged with the plugin's name; the other plugins are still called
    and the server goes on. In dev mode the exception is re-raised to the caller.
    """


@hookspec
def on_user_notification(app, user_id, kind, data):
    """Called when a plugin tells a user something worth a notification outside the
    page (``kind`` such as ``"lesson_unlocked"``, ``data`` a dict); other plugins may
    forward it, for example as a WeChat template message. Socket delivery on
    ``user:<id>`` is done by the caller. ``app.tell_users`` calls it once per item of
    its batch, so an implementation's database work is paid per notification; a
    plugin that implements ``on_user_notifications`` too gets ``tell_users``'s items
    there instead, and here only what is notified one by one (``app.notify``).

    On failure: logged with the plugin's name; the other plugins are still called
    and the server goes on. In dev mode the exception is re-raised to the caller.
    """


# ---------------------------------------------------------------------------
# Seams between plugins (added after the first release; kept at the end)
# ---------------------------------------------------------------------------


@hookspec
def register_resources(app):
    """Own resource prefixes, so other plugins can ask about access without reading
    this plugin's collections.

    Return a list of :class:`kpay.core.access.ResourceRule`. A rule owns every resource
    ``<prefix>:<id>``: it names the ``actions`` it answers, ``allows(app, user, action,
    id)`` says whether ``user`` may do one, and ``owner(app, id)`` names the owning user
    (None when there is no such resource). Others ask through ``app.access.allowed`` and
    ``app.access.owner``. Two rules for one prefix stop start-up.

    On failure: start-up stops with a ``PluginError`` naming the plugin (every mode).
    At request time a rule that raises fails closed: the error reaches the caller,
    never a yes; an unknown prefix or action is "not allowed".
    """


@hookspec
def public_profile_sections(app, user_id):
    """Called when someone opens a person's public profile
    (``GET /api/v1/users/{user_id}/profile``), to add what this plugin knows of them.

    Return a dict of sections by name (``{"rooms": [...]}``; the built-ins answer
    ``consult``, ``rooms`` and ``courses``, see docs/plugins.md), or None when it has
    nothing. Answer from the plugin's own collections, only what anyone may see (no
    drafts, no buyers), and keep each list short (at most 20 entries). Section names are
    the plugin's to choose; a name another plugin already answered is left out (logged).

    On failure: logged with the plugin's name and the profile is shown without its
    sections; the other plugins still answer. In dev mode the exception is re-raised.
    """


# ---------------------------------------------------------------------------
# Data ownership
# ---------------------------------------------------------------------------


@hookspec
def register_collections(app):
    """Declare the MongoDB collections the plugin owns.

    Called once at start-up, before the indexes are created. Return a list of
    collection names. A name declared by two plugins, or one of the core's
    collections (``users``, ``orders``, ``ledger`` ...), stops start-up; so does an
    index (``register_indexes``) on a collection the plugin did not declare. In tests
    (kpay.testing turns it on) ``app.store[name]`` called from the plugin's modules
    raises a ``PluginError`` for a collection it did not declare. A plugin without this
    hook is not checked and gets a ``DeprecationWarning``, logged once.

    On failure: start-up stops with a ``PluginError`` naming the plugin (every mode).
    """


# ---------------------------------------------------------------------------
# Sharing
# ---------------------------------------------------------------------------


@hookspec
def share_card(app, resource, user_id):
    """Describe a resource for a share poster (``GET /api/v1/posters/{resource}``).

    Called for ``resource`` (``<prefix>:<id>``, e.g. ``room:r1``, ``course:crs1``) when
    ``user_id`` asks for its poster; ``user:<id>`` is answered by the core itself.
    Answer only for a prefix the plugin owns, and return None (not an awaitable of
    None) for any other, so the others are asked cheaply. Return None as well when there
    is no such resource, it is not published, or ``user_id`` may not see it: the
    poster is then a 404. Otherwise return a dict: ``title`` (str), ``description``
    (str, may be empty), ``price`` (fen, 0 for free, None when there is no price),
    ``author_id`` (whose nickname the poster names, or None), ``cover_media_id`` (a
    public image uploaded through app.media) or ``cover_url`` (a URL of one of this
    server's public images, ``/media/<id>/<variant>``; nothing else is fetched, the
    poster then has a placeholder), and ``path``: the page's path on this
    server (``/static/course.html?id=crs1``), which the poster's QR code points at.
    The first non-None answer, in pluggy's order, is used.

    On failure: the poster request fails (fails closed, nothing is drawn or cached).
    """


# ---------------------------------------------------------------------------
# Saved notifications (docs/plugins.md, "app.notifications")
# ---------------------------------------------------------------------------


@hookspec
def describe_notification(app, user_id, kind, data):
    """Word a notification the plugin sends: called by ``app.tell_user(user_id, kind,
    data)`` to save it in ``user_id``'s notification list.

    Return ``{"title": str, "body": str, "link": str | None}`` in Chinese for the kinds
    this plugin tells (``link`` a path inside kpay, such as
    ``/static/course.html?id=c1``; anything else is refused), or None for a kind it
    does not know. The first answer that is not None wins, in pluggy's order; a kind
    nobody describes is saved as "新消息" without a link. Titles over 60 and bodies
    over 300 characters are cut.

    On failure (an exception, a bad link): logged with the kind; nothing is saved for
    that notification (no wording is guessed), while the socket event and
    ``on_user_notification`` still go. In dev mode the exception is re-raised to the
    caller of ``tell_user``.
    """


# ---------------------------------------------------------------------------
# Operators and personal data (docs/api.md "Operators", docs/operations.md
# "Personal data")
# ---------------------------------------------------------------------------


@hookspec
def admin_user_sections(app, user_id):
    """Called when an admin opens a user's detail (``GET /api/v1/admin/users/{user_id}``),
    to add what this plugin holds about them (consultations, enrollments, questions).

    Return a dict (e.g. ``{"title": "咨询", "items": [...]}``; the built-ins' shapes are
    in docs/plugins.md) or None when the plugin has nothing for this user; it is shown
    under the plugin's name. Answer from the plugin's own collections, newest first, at
    most 20 entries.

    On failure: logged with the plugin's name and the detail is shown without its
    section; the other plugins still answer. In dev mode the exception is re-raised.
    """


@hookspec
def export_user_data(app, user_id):
    """Called when an admin exports everything kpay keeps about a user
    (``GET /api/v1/admin/users/{user_id}/export``, ``kpay user export``).

    Return a JSON-ready dict of every record the plugin's collections hold about
    ``user_id`` (as a buyer, a host, an author, a questioner), or None when there is
    none. Bound each list (at most 5,000 records of a kind).

    On failure: the export fails (fails closed: an export must not look complete when
    a plugin's part is missing).
    """


@hookspec
def anonymise_user(app, user_id):
    """Called when an admin anonymises a user
    (``POST /api/v1/admin/users/{user_id}/anonymise``, ``kpay user anonymise``), after
    the core removed their identity.

    Remove free text the plugin holds that the user wrote or that names them (a
    question's text becomes "（已删除）"), and anything else that identifies them. Keep
    money records and their amounts, and ids as opaque keys. Must be idempotent (it runs
    again after any failure). Return a dict of counts (``{"questions": 3}``) or None.

    On failure: the anonymisation fails (fails closed) and the admin runs it again.
    """


# ---------------------------------------------------------------------------
# Audience: tags, segments, messages (docs/audience.md)
# ---------------------------------------------------------------------------


@hookspec
def audience_students(app, consultant_id):
    """Name the users who are ``consultant_id``'s students by what this plugin knows
    from its own collections (had a consultation with them, say) beyond the paid
    orders crediting the consultant, which the core reads itself.

    Return an iterable of user ids (or an awaitable of one), at most 10,000; None or
    an empty list for none. Called when a consultant tags a user, lists their students
    or computes a segment.

    On failure: the request fails (500 in production; the exception in dev mode):
    a consultant never sees a wider or narrower audience than the truth.
    """


@hookspec
def register_audience_rules(app):
    """Add rule kinds a segment may combine (bought this plugin's product, say).

    Return a list of :class:`kpay.core.audience.rules.AudienceRule`: ``name``,
    ``label`` (Chinese, shown in the segment builder), ``params`` (a pydantic model) and
    an async ``members(app, owner, params)`` returning the user ids it picks, at most
    10,000, from bounded indexed queries of the plugin's own collections. ``owner`` is a
    consultant's id (answer among their products) or ``"platform"`` for operators;
    the core keeps a consultant's answer to their students. Called once per app, the
    first time rules are needed. A name used twice fails that request.

    On failure: the request that first needed the rules fails with a ``PluginError``
    naming the plugin.
    """


# ---------------------------------------------------------------------------
# Analytics
# ---------------------------------------------------------------------------


@hookspec
def analytics_sections(app, owner_id, start, end):
    """Called when a dashboard is built (``GET /api/v1/analytics/dashboard``), to add
    what this plugin knows of a seller's activity: ``owner_id`` the seller's user id, or
    None for the whole platform (an admin's dashboard); ``start`` (included) and ``end``
    (excluded) aware UTC datetimes, whole days of ``[server] timezone``.

    Return a list of sections or None. A section is ``{"key": "course_funnel", "title":
    "课程漏斗", "unit": "count" | "minutes" | "fen", "items": [{"label": "已报名",
    "value": 12, "note": "可选"}]}``, shown as a bar chart with the title and labels in
    Chinese (at most 50 items; a key 1 to 40 lowercase letters, digits or ``_``). Answer
    from the plugin's own collections with a fixed number of indexed queries or server-
    side aggregations, whatever the number of documents. A malformed section is left
    out (logged).

    On failure: logged with the plugin's name and the dashboard is shown without its
    sections; the other plugins still answer. In dev mode the exception is re-raised.
    """


# ---------------------------------------------------------------------------
# Notifications in batches (docs/plugins.md "app.tell_user")
# ---------------------------------------------------------------------------


@hookspec
def on_user_notifications(app, batch):
    """Called once per ``app.tell_users`` (``app.tell_user`` is a batch of one) with
    every item told, so a forwarder does its database work once per batch (one read of
    the users it needs, one insert of its records) rather than once per notification.
    ``batch`` is a list of :class:`kpay.core.telling.Told` (``user_id``, ``kind``,
    ``data``), in the order told, each already published on ``user:<id>``.

    A plugin that implements this hook is not called with ``on_user_notification`` for
    these items (it would forward them twice); it still gets that hook for what is
    notified one by one (``app.notify("on_user_notification", ...)``), so a forwarder
    implements both. A plugin that implements only ``on_user_notification`` is called
    once per item, as before.

    On failure: logged with the plugin's name; the other plugins are still called
    and the server goes on. In dev mode the exception is re-raised to the caller.
    """
