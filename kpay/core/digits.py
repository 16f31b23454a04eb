"""Whole numbers written in decimal by someone outside kpay (a header, a query argument,
a path, a field WeChat sends, a command-line option): read here, in one place."""

from __future__ import annotations

# 18 digits stay below 2**63: the number fits BSON's 64-bit integer.
MAX_DIGITS = 18


def parse_digits(text: str | None, max_digits: int = MAX_DIGITS) -> int | None:
    """The number ``text`` spells in 1 to ``max_digits`` ASCII digits (``0``-``9`` and
    nothing else), or None: the caller answers None with its own refusal.

    Why not ``text.isdigit()`` then ``int(text)``: ``isdigit()`` also takes "²" and other
    digits that ``int()`` refuses (a ValueError after the check: a 500, or a crash). And
    ``int()`` alone takes " 7", "+7", "7_0", "٧" (Arabic-Indic) and thousands of digits.
    """
    if text is None or not 0 < len(text) <= max_digits:
        return None
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text)
