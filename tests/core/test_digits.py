"""kpay.core.digits: numbers from outside are ASCII digits, bounded, or nothing."""

from __future__ import annotations

import pytest

from kpay.core.digits import parse_digits


@pytest.mark.parametrize("text, number", [("0", 0), ("42", 42), ("007", 7),
                                          ("9" * 18, 10**18 - 1)])
def test_ascii_digits_are_read(text, number):
    assert parse_digits(text) == number


@pytest.mark.parametrize("text", [None, "", "²", "١٢٣", "１２", " 7", "7 ", "+7", "-7",
                                  "7_0", "7.0", "0x7", "9" * 19, "9" * 5000])
def test_anything_else_is_none(text):
    # "²" passes str.isdigit() and int() refuses it; int() takes the others but one
    # (5000 digits: over its 4300-digit limit).
    assert parse_digits(text) is None


def test_the_bound_is_the_callers():
    assert parse_digits("12345", max_digits=4) is None
    assert parse_digits("1234", max_digits=4) == 1234
