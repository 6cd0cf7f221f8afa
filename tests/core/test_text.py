"""Text helpers: one HH:MM rule for the store and the schedule, one-line values."""

from __future__ import annotations

from datetime import time

import pytest

from digest.core.errors import InputError
from digest.core.text import mask_email, one_line, parse_hhmm, split_first_sentence
from digest.edition.schedule import check_send_time
from digest.store.subscriber_check import validate_send_time


@pytest.mark.parametrize(
    ("value", "expected"), [("07:05", time(7, 5)), ("7:05", time(7, 5)), (" 23:59 ", time(23, 59))]
)
def test_hhmm_accepts_times_of_day(value: str, expected: time) -> None:
    assert parse_hhmm(value) == expected


@pytest.mark.parametrize("value", ["24:00", "07:60", "7:5", "0700", "seven", ""])
def test_hhmm_refuses_anything_else_naming_the_rule(value: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_hhmm(value)


@pytest.mark.parametrize("value", ["7:05", "07:05", "24:00", "7:5"])
def test_the_store_and_the_schedule_agree_on_send_times(value: str) -> None:
    try:
        stored = validate_send_time(value, "send_time")
    except InputError:
        with pytest.raises(ValueError):
            check_send_time(value)
    else:
        assert stored is not None and check_send_time(stored) == check_send_time(value)


def test_one_line_drops_control_characters_and_folds_space() -> None:
    assert one_line("Breaking:\r\nBcc: x@y.z\t now") == "Breaking: Bcc: x@y.z now"


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("ana.lima@example.org", "a***@example.org"),
        ("a@b.co", "a***@b.co"),
        ("Ben.O+x@mail.example.org", "B***@mail.example.org"),
    ],
)
def test_an_address_keeps_only_its_first_character_and_domain(address: str, masked: str) -> None:
    assert mask_email(address) == masked


@pytest.mark.parametrize(
    ("text", "first", "rest"),
    [
        ("Dr. Smith flew to Washington. He was late.", "Dr. Smith flew to Washington.", "He was late."),
        ("The U.S. economy grew 3.5% in Q3. Stocks rose.", "The U.S. economy grew 3.5% in Q3.", "Stocks rose."),
        ("J. K. Rowling spoke. Fans cheered.", "J. K. Rowling spoke.", "Fans cheered."),
        ("About approx. five came. Then rain.", "About approx. five came.", "Then rain."),
        ('He said "Stop." Then he left.', 'He said "Stop."', "Then he left."),
        ("Wait... what? Yes.", "Wait... what?", "Yes."),
        ("北京今天下雨。明天会放晴。", "北京今天下雨。", "明天会放晴。"),
        ("서울에 눈이 왔다. 내일은 맑다.", "서울에 눈이 왔다.", "내일은 맑다."),
        ("هل تمطر غدا؟ نعم.", "هل تمطر غدا؟", "نعم."),
        ("یہ پہلا جملہ ہے۔ یہ دوسرا ہے۔", "یہ پہلا جملہ ہے۔", "یہ دوسرا ہے۔"),
        ("One sentence, no stop", "One sentence, no stop", ""),
        ("Only one.", "Only one.", ""),
    ],
)
def test_split_first_sentence(text: str, first: str, rest: str) -> None:
    assert split_first_sentence(text) == (first, rest)
