"""pdata/logfields (the jsonlogs receiver's time and level fields): digit strings past
Python's int-string limit, or digits int() refuses, are no timestamp or level number;
before, they raised ValueError out of the receiver."""

from __future__ import annotations

import pytest

from pipeline.pdata.logfields import MAX_INT_DIGITS, parse_severity, parse_timestamp

N = "9" * 4301


@pytest.mark.parametrize("text", [N, " " + N, "1" + "0" * 20, "\u00b2", "\u00b2\u00b3"])
def test_long_or_odd_digits_are_no_timestamp(text: str) -> None:
    assert parse_timestamp(text) is None


def test_twenty_digits_still_are() -> None:
    assert MAX_INT_DIGITS == 20
    assert parse_timestamp("1700000000000000000") == 1_700_000_000_000_000_000
    assert parse_timestamp("1700000000") == 1_700_000_000_000_000_000


@pytest.mark.parametrize("text", [N, "\u00b2"])
def test_long_or_odd_digits_are_a_level_text_only(text: str) -> None:
    assert parse_severity(text) == (0, text)


def test_a_level_number_still_is() -> None:
    assert parse_severity("3") == (17, "3")  # syslog 3: error
