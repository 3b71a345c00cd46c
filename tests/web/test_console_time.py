"""Typed dd/mm/yyyy HH:MM times (web.console_time): the calendar, the 24-hour clock, the
province's zone, and an error that says what is wrong in the page's language."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from web.console_time import TimeInputError, format_local, looks_local, parse_local

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("text", "expected"), [
    ("05/12/2026 22:00", utc(2026, 12, 5, 15, 0)),
    ("5/1/2027 7:05", utc(2027, 1, 5, 0, 5)),             # one-digit day, month and hour
    ("  05/12/2026   22:00 ", utc(2026, 12, 5, 15, 0)),  # spaces around and between
    ("01/01/2027 00:00", utc(2026, 12, 31, 17, 0)),      # midnight starts the day
    ("31/12/2026 23:59", utc(2026, 12, 31, 16, 59)),     # the year's last minute
    ("31/01/2027 12:00", utc(2027, 1, 31, 5, 0)),        # month boundaries: 31-day months
    ("30/04/2027 12:00", utc(2027, 4, 30, 5, 0)),
    ("28/02/2027 12:00", utc(2027, 2, 28, 5, 0)),
    ("29/02/2028 12:00", utc(2028, 2, 29, 5, 0)),        # a leap day
    ("01/07/2027 12:00", utc(2027, 7, 1, 5, 0)),         # no daylight saving: +07:00 in July
    ("01/01/2027 12:00", utc(2027, 1, 1, 5, 0)),         # ... and in January
])
def test_typed_times_are_read_in_the_provinces_zone(text: str, expected: float) -> None:
    assert parse_local(text, HCM) == expected


@pytest.mark.parametrize(("text", "key"), [
    ("05/12/2026 24:00", "time_error_clock"),   # midnight is 00:00 of the next day
    ("05/12/2026 23:60", "time_error_clock"),
    ("05/12/2026 10:00 PM", "time_error_shape"),  # no 12-hour clock
    ("2026-12-05 22:00", "time_error_shape"),     # an ISO text is not the typed form
    ("12/05/2026", "time_error_shape"),           # a date without a time
    ("05.12.2026 22:00", "time_error_shape"),
    ("", "time_error_shape"),
    ("31/02/2027 10:00", "time_error_date"),
    ("29/02/2027 10:00", "time_error_date"),      # not a leap year
    ("31/04/2027 10:00", "time_error_date"),      # April has 30 days
    ("32/01/2027 10:00", "time_error_date"),
    ("00/01/2027 10:00", "time_error_date"),
    ("05/13/2026 10:00", "time_error_date"),      # month 13 (a US-style slip)
    ("05/12/1999 10:00", "time_error_year"),
    ("05/12/2101 10:00", "time_error_year"),
])
def test_bad_typed_times_say_what_is_wrong(text: str, key: str) -> None:
    with pytest.raises(TimeInputError) as caught:
        parse_local(text, HCM)
    assert caught.value.key == key
    vi, en = caught.value.message("vi"), caught.value.message("en")
    assert vi != en and str(caught.value) == en
    if text.strip():
        assert text.strip() in vi and text.strip() in en


def test_a_skipped_local_time_is_refused_in_a_zone_with_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    with pytest.raises(TimeInputError) as caught:
        parse_local("29/03/2026 02:30", berlin)  # clocks jump from 02:00 to 03:00
    assert caught.value.key == "time_error_gap"
    assert parse_local("29/03/2026 03:30", berlin) == utc(2026, 3, 29, 1, 30)


def test_messages_in_both_languages_and_the_round_trip() -> None:
    with pytest.raises(TimeInputError) as caught:
        parse_local("05/12/2026 24:00", HCM)
    assert "00:00" in caught.value.message("vi") and "00 to 23" in caught.value.message("en")
    assert caught.value.message("fr") == caught.value.message("en")
    stamp = parse_local("06/12/2026 08:30", HCM)
    assert format_local(stamp, HCM) == "06/12/2026 08:30"
    assert looks_local("06/12/2026 08:30") and not looks_local("2026-12-06T08:30")
    assert not looks_local(1796482800)
