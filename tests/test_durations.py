"""Durations as typed (`90s`, `10m`, `4h`, `7d`, `1w`, plain seconds) and as shown."""

from __future__ import annotations

import pytest
from adaptive.durations import format_duration, parse_duration


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("10m", 600), ("4h", 14400), ("7d", 604800), ("1w", 604800), ("90", 90), ("2.5", 2.5),
    ("1.5h", 5400), ("1h30m", 5400), ("1d12h", 129600), (".5m", 30),
])
def test_forms(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, message", [
    ("", "is not a duration: use a number of seconds"),
    ("4x", "'4x' is not a duration: use a number of seconds, or numbers with s, m, h, d or w"),
    ("4 h", "is not a duration"), ("h", "is not a duration"), ("-5m", "is not a duration"),
    ("4H", "is not a duration"), ("1e3", "is not a duration"), ("nan", "is not a duration"),
    ("0", "'0' is not a duration: it must be longer than zero"), ("0s0m", "longer than zero"),
    ("9999w", "'9999w' is too long a duration: at most 3650d"),
])
def test_errors_name_the_text(text, message):
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@pytest.mark.parametrize("seconds, text", [
    (None, "forever"), (0, "0s"), (-3, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m59s"), (3600, "1h"),
    (14340, "3h59m"), (93784, "1d2h"), (604800, "7d"), (601200, "6d23h"),
])
def test_shown_with_two_units_at_most(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["0", "0s", "0h0m"])
def test_zero_only_where_asked_for(text):
    assert parse_duration(text, zero=True) == 0
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration(text)
