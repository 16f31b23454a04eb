"""Named failpoints: kill the process at a chosen place, for crash-safety tests.

``failpoint(name)`` marks a place in the code, before or after a money write. It does
nothing unless the environment variable ``KPAY_FAILPOINT`` (read once, at import)
names it::

    KPAY_FAILPOINT=orders.fulfil.after_kind:2             # the 2nd time it is passed
    KPAY_FAILPOINT=billing.after_batch:1,refunds.after_provider:3

Then the n-th time the point is passed the process ends at once with ``os._exit(137)``,
the status a ``kill -9`` gives a shell: no ``finally``, no ``atexit``, no buffer
flushed, no transaction aborted, no socket closed. One line (``kpay failpoint <name>
hit``) is written straight to file descriptor 2 first, so a test can tell where it
died. ``<name>`` alone means ``<name>:1``.

Unset (production), a failpoint costs one truth test of an empty dict. Every name is
listed in :data:`FAILPOINTS`; a test checks that each is really placed in the code,
and ``KPAY_FAILPOINT`` naming an unknown one stops the process at import.
"""

from __future__ import annotations

import os

ENV = "KPAY_FAILPOINT"
#: The exit status of a process stopped by a failpoint (128 + SIGKILL, as a shell shows).
EXIT_STATUS = 137

#: Every failpoint in the code, in the order a flow passes them.
FAILPOINTS = (
    # plugins/consult_billing/charges.py: the minutes of many sessions in one transaction
    "billing.before_batch",
    "billing.after_batch",
    # ... and one session's minute alone (accept's minute 1, settling one session)
    "billing.before_minute",
    "billing.after_minute",
    # kpay/core/money/orders.py Orders.mark_paid: pending -> paid and the payment booked
    "orders.mark_paid.before",
    "orders.mark_paid.after",
    # Orders.fulfil: the kind delivers, then the order is marked fulfilled
    "orders.fulfil.before_kind",
    "orders.fulfil.after_kind",
    "orders.fulfil.after_mark",
    # kpay/core/money/refunds.py: reserve (and, to the wallet, book) in one transaction;
    # to the original channel: the provider pays out, then the refund is booked
    "refunds.before_reserve",
    "refunds.after_reserve",
    "refunds.after_provider",
    "refunds.after_booking",
    # kpay/core/money/payouts.py: the provider took the transfer, the books not yet
    "payouts.after_transfer",
)


def parse(value: str) -> dict[str, int]:
    """``"a:2,b"`` -> ``{"a": 2, "b": 1}``; ValueError on an unknown name or a bad count."""
    armed: dict[str, int] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, count = part.partition(":")
        name = name.strip()
        if name not in FAILPOINTS:
            raise ValueError(f"{ENV}: unknown failpoint {name!r}; known: "
                             + ", ".join(FAILPOINTS))
        try:
            n = int(count) if count.strip() else 1
        except ValueError:
            raise ValueError(f"{ENV}: {part!r} is not <name>:<n>") from None
        if n < 1:
            raise ValueError(f"{ENV}: {part!r}: n counts from 1")
        armed[name] = n
    return armed


_armed: dict[str, int] = parse(os.environ.get(ENV, ""))
_passed: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Pass the failpoint ``name``: the process dies here if ``KPAY_FAILPOINT`` says so."""
    if not _armed:
        return
    target = _armed.get(name)
    if target is None:
        return
    passed = _passed[name] = _passed.get(name, 0) + 1
    if passed == target:
        os.write(2, f"kpay failpoint {name} hit (pass {passed})\n".encode())
        os._exit(EXIT_STATUS)
