from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.processors.logstruct.timestamps import TimeParser

NOW = datetime(2024, 6, 15, tzinfo=UTC).timestamp()


def ns(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, frac: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()) * 1_000_000_000 + frac


@pytest.mark.parametrize(("text", "want"), [
    ("2024-03-01T12:00:00Z", ns(2024, 3, 1, 12)),
    ("2024-03-01T12:00:00.123456789Z", ns(2024, 3, 1, 12, frac=123456789)),
    ("2024-03-01T14:00:00+02:00", ns(2024, 3, 1, 12)),
    ("2024-03-01 12:00:00,250", ns(2024, 3, 1, 12, frac=250_000_000)),
    ("2024-03-01 12:00:00 +0100", ns(2024, 3, 1, 11)),
    ("2024-03-01 12:00:00 UTC", ns(2024, 3, 1, 12)),
    ("20240301T120000Z", ns(2024, 3, 1, 12)),
    ("Jun 14 15:16:01", ns(2024, 6, 14, 15, 16, 1)),
    ("Jun  4 15:16:01.5", ns(2024, 6, 4, 15, 16, 1, frac=500_000_000)),
    ("Jun 16 00:00:00", ns(2024, 6, 16)),  # one day ahead at most: this year
    ("Jun 17 00:00:00", ns(2023, 6, 17)),  # further ahead: last year
    ("Dec 31 23:59:59", ns(2023, 12, 31, 23, 59, 59)),
    ("Feb 29 10:00:00", ns(2024, 2, 29, 10)),
    ("Jun 14 2019 15:16:01", ns(2019, 6, 14, 15, 16, 1)),
    ("Sun Dec 04 04:47:44 2005", ns(2005, 12, 4, 4, 47, 44)),
    ("[Sun Dec 04 04:47:44 2005]", ns(2005, 12, 4, 4, 47, 44)),
    ("Fri Sep 09 10:42:29.902022 2011", ns(2011, 9, 9, 10, 42, 29, frac=902022000)),
    ("Sun, 04 Dec 2005 04:47:44 GMT", ns(2005, 12, 4, 4, 47, 44)),
    ("10/Oct/2000:13:55:36 -0700", ns(2000, 10, 10, 20, 55, 36)),
    ("2024/03/01 12:00:00", ns(2024, 3, 1, 12)),
    ("17/06/09 20:10:40", ns(2017, 6, 9, 20, 10, 40)),
    ("081109 203615", ns(2008, 11, 9, 20, 36, 15)),
    ("I0301 12:00:00.123456", ns(2024, 3, 1, 12, frac=123456000)),
    ("0301 12:00:00.123456", ns(2024, 3, 1, 12, frac=123456000)),
    ("1709294400", ns(2024, 3, 1, 12)),
    ("1709294400.5", ns(2024, 3, 1, 12, frac=500_000_000)),
    ("1709294400123", ns(2024, 3, 1, 12, frac=123_000_000)),
    ("1709294400123456", ns(2024, 3, 1, 12, frac=123_456_000)),
    ("1709294400123456789", ns(2024, 3, 1, 12, frac=123_456_789)),
    ("yesterday", None),
    ("2024-13-01T00:00:00Z", None),
    ("Foo 14 15:16:01", None),
    ("", None),
])
def test_time_formats(text: str, want: int | None) -> None:
    assert TimeParser(clock=lambda: NOW).parse(text) == want


def test_epoch_numbers() -> None:
    tp = TimeParser(clock=lambda: NOW)
    assert tp.parse(1709294400) == ns(2024, 3, 1, 12)
    assert tp.parse(1709294400.25) == ns(2024, 3, 1, 12, frac=250_000_000)
    assert tp.parse(1709294400123) == ns(2024, 3, 1, 12, frac=123_000_000)
    assert TimeParser("epoch_ms").parse("1709294400") == 1709294400 * 1_000_000
    assert TimeParser("epoch_s").parse(5) == 5_000_000_000


def test_timezone_for_zoneless_stamps() -> None:
    tp = TimeParser(timezone="Europe/Berlin", clock=lambda: NOW)
    assert tp.parse("2024-03-01T13:00:00") == ns(2024, 3, 1, 12)      # CET, +1
    assert tp.parse("2024-06-01 14:00:00") == ns(2024, 6, 1, 12)      # CEST, +2
    assert tp.parse("Jun 14 15:16:01") == ns(2024, 6, 14, 13, 16, 1)
    assert tp.parse("2024-03-01T13:00:00Z") == ns(2024, 3, 1, 13)     # explicit zone wins


def test_strptime_time_format_with_and_without_year() -> None:
    tp = TimeParser("%d.%m.%Y %H:%M:%S", clock=lambda: NOW)
    assert tp.parse("01.03.2024 12:00:00") == ns(2024, 3, 1, 12)
    assert tp.parse("2024-03-01T12:00:00Z") == ns(2024, 3, 1, 12)  # falls back to built-ins
    yearless = TimeParser("%m.%d %H:%M:%S", clock=lambda: NOW)
    assert yearless.parse("10.30 16:49:06") == ns(2023, 10, 30, 16, 49, 6)
    assert yearless.parse("02.29 00:00:00") == ns(2024, 2, 29)
    zoned = TimeParser("%d/%b/%Y:%H:%M:%S %z")
    assert zoned.parse("10/Oct/2000:13:55:36 -0700") == ns(2000, 10, 10, 20, 55, 36)
    local = TimeParser("%Y%m%d %H%M%S", timezone="America/New_York")
    assert local.parse("20240301 070000") == ns(2024, 3, 1, 12)


@pytest.mark.parametrize("tz", [None, "Europe/Berlin"])
def test_per_second_time_caches_agree_with_a_fresh_parser(tz: str | None) -> None:
    cached = TimeParser(None, tz, lambda: NOW)
    stamps = []
    for sec in ("2024-03-31 01:59:59", "2024-03-31T02:30:00", "2024-10-27 02:30:00",
                "2024-01-15T10:20:30", "1970-01-01 00:00:00"):
        for frac in (".000", ".001", ",500", ".999"):
            stamps += [sec + frac, sec.replace(" ", "T") + frac + "Z"]
    stamps += ["2024-01-15T10:20:30.12x", "2024-01-15 10:20:30.1234", "2024-13-15 10:20:30.123"]
    for _ in range(2):  # the second round is served from the caches
        for s in stamps:
            assert cached.parse(s) == TimeParser(None, tz, lambda: NOW).parse(s), s
