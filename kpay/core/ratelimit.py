"""Request limits (``[limits]``) and caps on open things per user.

**Rate limits.** Every HTTP request served by a :class:`kpay.core.web.BaseHandler` is put
in a class (:func:`route_class`): ``read`` (GET, HEAD, OPTIONS), ``write`` (POST, PUT,
PATCH, DELETE), ``login`` (the login routes, which have no user yet) or ``orders``
(``POST /api/v1/orders``, which may call WeChat Pay). A route may name its class
(``Route(..., limit="orders")`` or ``@api(..., limit="write")``; ``"none"`` exempts it).
Health, metrics, the OpenAPI document and the payment notifies are never limited.

Each class has a token bucket (``<class>_per_second`` refill, ``<class>_burst`` size)
per key (:func:`limit_key`): the user for an authenticated request; the client IP for a
login route, and for a route declared ``auth=False`` called without a token. A request
of an unknown caller to a route that needs a user is not counted (it is refused with
401 anyway). The buckets live in this process's memory: with several nodes, a user's
budget is per node.

The bucket map stays bounded: buckets that have filled up again (idle) are dropped as
requests go by, and past ``[limits] max_keys`` the least recently used bucket is
dropped (that key starts again with a full bucket).

**Caps.** :func:`enforce_cap` refuses to open one more thing (an order, a request, a
room, a draft) when a user already has as many open as their cap allows:
``409 too_many_open`` with ``what`` and ``limit``.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from kpay.core.config import LimitSettings
from kpay.core.errors import TooManyOpen

#: The classes a route may be in; each has ``<name>_per_second`` and ``<name>_burst``.
LIMIT_CLASSES = ("read", "write", "login", "orders")
#: The class of routes that are never limited.
EXEMPT = "none"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: Route templates never limited: probes, the API document, payment notifies (WeChat's
#: servers must always get through, from whatever address).
EXEMPT_ROUTES = ("/healthz", "/metrics", "/api/v1/openapi.json",
                 "/api/v1/pay/*/notify", "/api/v1/pay/*/refund-notify")
#: Route templates that log a user in: limited per client IP in the ``login`` class.
LOGIN_ROUTES = ("/api/v1/dev/login", "/api/v1/wechat/oauth/*")
#: (method, route template) -> class, for routes whose class is not their method's.
ROUTE_CLASSES = {("POST", "/api/v1/orders"): "orders"}

#: Full buckets looked at (and dropped) from the least recently used end per request.
SWEEP_PER_TAKE = 4


def check_limit_class(name: str | None) -> str | None:
    """``name`` if it is a class a route may declare (or None); else ValueError."""
    if name is not None and name not in (*LIMIT_CLASSES, EXEMPT):
        raise ValueError(f"unknown limit class {name!r}; classes: "
                         + ", ".join((*LIMIT_CLASSES, EXEMPT)))
    return name


def route_class(route: str, method: str, declared: str | None = None) -> str:
    """The class of a ``method`` request to the route template ``route``
    (``/api/v1/rooms/{room_id}``): :data:`EXEMPT` routes first, then the class the route
    declared, the login routes, :data:`ROUTE_CLASSES`, and by method."""
    if any(fnmatchcase(route, pattern) for pattern in EXEMPT_ROUTES):
        return EXEMPT
    if declared:
        return declared
    if any(fnmatchcase(route, pattern) for pattern in LOGIN_ROUTES):
        return "login"
    method = method.upper()
    return ROUTE_CLASSES.get((method, route)) or ("read" if method in READ_METHODS else "write")


def limit_key(limit_class: str, user_id: str | None, client_ip: str,
              needs_user: bool) -> str | None:
    """Whose bucket a request takes from, or None when it is not counted: the client IP
    on login routes; the user when there is one; the client IP on a route without auth
    called without a token; nobody for an anonymous call to a route that needs a user
    (it gets 401) or an exempt route."""
    if limit_class == EXEMPT:
        return None
    if limit_class == "login":
        return f"ip:{ip_key(client_ip)}"
    if user_id is not None:
        return f"user:{user_id}"
    if not needs_user:
        return f"ip:{ip_key(client_ip)}"
    return None


def ip_key(client_ip: str) -> str:
    """The address a bucket is kept for: an IPv6 client by its /64, since one home or
    phone gets a whole /64 and could otherwise take a fresh bucket per address."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return client_ip


def retry_after(wait: float) -> int:
    """Seconds to send in ``Retry-After``: whole, rounded up, at least 1."""
    return max(1, math.ceil(wait - 1e-9))


class RateLimiter:
    """Token buckets per (class, key), in memory, with a bounded number of keys.

    ``monotonic`` is the clock (seconds, only differences matter); tests replace it to
    move time without sleeping.
    """

    def __init__(self, settings: LimitSettings,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.enabled = settings.enabled
        self.monotonic = monotonic
        self.max_keys = settings.max_keys
        self.rates: Mapping[str, tuple[float, int]] = {
            name: (getattr(settings, f"{name}_per_second"), getattr(settings, f"{name}_burst"))
            for name in LIMIT_CLASSES}
        # (class, key) -> [tokens, when they were counted]; least recently used first.
        self.buckets: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        #: Buckets dropped at max_keys before they had filled up again.
        self.evicted = 0

    def take(self, limit_class: str, key: str) -> float:
        """Take a token from ``key``'s bucket of ``limit_class``: 0.0 when the request may
        go on, else the seconds until a token will be there (nothing is taken then)."""
        rate, burst = self.rates[limit_class]
        now = self.monotonic()
        # First, so the bucket taken from below is never the one dropped.
        self._sweep(now, SWEEP_PER_TAKE)
        name = (limit_class, key)
        bucket = self.buckets.get(name)
        if bucket is None:
            self._make_room(now)
            bucket = self.buckets[name] = [float(burst), now]
        else:
            self.buckets.move_to_end(name)
            bucket[0] = min(float(burst), bucket[0] + max(0.0, now - bucket[1]) * rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / rate

    def _full(self, name: tuple[str, str], bucket: list[float], now: float) -> bool:
        rate, burst = self.rates[name[0]]
        return bucket[0] + (now - bucket[1]) * rate >= burst

    def _sweep(self, now: float, most: int) -> None:
        """Drop full buckets from the least recently used end (at most ``most``): a full
        bucket is the same as none."""
        for _ in range(most):
            if not self.buckets:
                return
            name, bucket = next(iter(self.buckets.items()))
            if not self._full(name, bucket, now):
                return
            del self.buckets[name]

    def _make_room(self, now: float) -> None:
        if len(self.buckets) < self.max_keys:
            return
        self._sweep(now, 64)
        while len(self.buckets) >= self.max_keys:
            self.buckets.popitem(last=False)
            self.evicted += 1


async def enforce_cap(collection: Any, query: dict[str, Any], limit: int, what: str,
                      message: str) -> None:
    """Refuse with ``409 too_many_open`` when ``query`` already matches ``limit``
    documents of ``collection`` (``limit`` 0: no cap). Counts at most ``limit``.

    Not atomic with the insert that follows: requests racing each other may pass the
    cap by a few; the rate limits bound how many can race.
    """
    if limit <= 0:
        return
    if await collection.count_documents(query, limit=limit) >= limit:
        raise TooManyOpen(message, what=what, limit=limit)
