"""Choosing dead letters and planning re-drives, without a broker."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slipstream.schemas.dead_letter import (
    DEAD_LETTER_TOPIC,
    QUARANTINE_TOPIC,
    REDRIVE_FROM_HEADER,
    REDRIVE_HEADER,
    REDRIVE_ID_HEADER,
    RawMessage,
    dead_letter_topic,
    envelope,
)
from slipstream.schemas.dead_letter_filters import (
    Coordinate,
    Letter,
    LetterFilter,
    RedriveEntry,
    count,
    hexdump,
    letter_json,
    make_filter,
    parse_coordinate,
    parse_time,
    plan_redrive,
    redrive_headers,
    redrive_id,
)
from slipstream.schemas.exceptions import DeadLetterError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _letter(
    offset: int,
    *,
    error_type: str = "undecodable",
    reason: str = "message written with unknown schema fingerprint 00ff",
    processor: str = "fraud-consumer",
    source_topic: str = "p.transactions",
    failed_at: datetime = NOW,
    headers: tuple[tuple[str, bytes | None], ...] = (),
    topic: str = DEAD_LETTER_TOPIC,
    partition: int = 0,
) -> Letter:
    raw = RawMessage(source_topic, 1, 100 + offset, 1_700_000_000_123, b"42", b"\xc3\x01abc", headers)
    record = envelope(raw, error_type=error_type, reason=reason, processor=processor, failed_at=failed_at)
    record["source_timestamp"] = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)  # as the decoder gives it
    return Letter(topic, Coordinate(partition, offset), record)


@pytest.mark.parametrize(("text", "expected"), [("2:41", Coordinate(2, 41)), (" 0:0 ", Coordinate(0, 0))])
def test_coordinates_parse(text: str, expected: Coordinate) -> None:
    assert parse_coordinate(text) == expected
    assert str(expected) == text.strip()


@pytest.mark.parametrize("text", ["2-41", "2:", ":41", "a:b", "-1:3", "2:41:5", ""])
def test_a_malformed_id_is_named(text: str) -> None:
    with pytest.raises(DeadLetterError, match=re.escape(f"dead-letter id {text!r} is not partition:offset")):
        parse_coordinate(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("90s", NOW - timedelta(seconds=90)),
        ("1.5d", NOW - timedelta(hours=36)),
        ("1w", NOW - timedelta(days=7)),
        ("2026-02-01T00:00:00+00:00", datetime(2026, 2, 1, tzinfo=UTC)),
        ("2026-02-01T01:00:00+01:00", datetime(2026, 2, 1, tzinfo=UTC)),
        ("2026-02-01T00:00:00Z", datetime(2026, 2, 1, tzinfo=UTC)),
    ],
)
def test_times_are_iso_with_a_zone_or_relative(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


def test_a_naive_or_unreadable_time_is_named() -> None:
    with pytest.raises(DeadLetterError, match=r"--since: '2026-02-01T00:00' has no timezone"):
        parse_time("2026-02-01T00:00", NOW, "--since")
    with pytest.raises(DeadLetterError, match=r"--until: 'yesterday' is neither an ISO-8601 time"):
        parse_time("yesterday", NOW, "--until")


def test_make_filter_names_the_first_bad_value() -> None:
    with pytest.raises(DeadLetterError, match=r"--error-type: unknown 'poison'; known: undecodable"):
        make_filter(now=NOW, error_types=["undecodable", "poison"])
    with pytest.raises(DeadLetterError, match=r"--reason-regex: '\[' is not a regular expression"):
        make_filter(now=NOW, reason_regex="[")
    with pytest.raises(DeadLetterError, match=r"--since '1h' .* is after --until '2h'"):
        make_filter(now=NOW, since="1h", until="2h")
    with pytest.raises(DeadLetterError, match=r"dead-letter id 'x' is not"):
        make_filter(now=NOW, ids=["x"])


def test_the_filter_takes_only_what_every_field_takes() -> None:
    letters = [
        _letter(0),
        _letter(1, error_type="schema_mismatch", reason="Avro body does not decode with schema 'transaction' v0"),
        _letter(2, processor="score-stream"),
        _letter(3, source_topic="p.labels"),
        _letter(4, failed_at=NOW - timedelta(days=2)),
    ]

    def ids(**kwargs: Any) -> list[int]:
        where = make_filter(now=NOW, **kwargs)
        return [x.coordinate.offset for x in letters if where.matches(x)]

    assert ids() == [0, 1, 2, 3, 4]
    assert ids(error_types=["schema_mismatch"]) == [1]
    assert ids(error_types=["schema_mismatch", "undecodable"]) == [0, 1, 2, 3, 4]
    assert ids(reason="UNKNOWN schema") == [0, 2, 3, 4]  # substring, any case
    assert ids(reason_regex=r"schema '\w+' v\d") == [1]
    assert ids(processors=["score-stream"]) == [2]
    assert ids(source_topics=["p.labels"]) == [3]
    assert ids(since="1d") == [0, 1, 2, 3]
    assert ids(until="1d") == [4]
    assert ids(ids=["0:3", "0:4", "1:0"]) == [3, 4]
    assert ids(error_types=["undecodable"], processors=["fraud-consumer"], since="1d") == [0, 3]


def test_counts_by_error_type_and_processor() -> None:
    counts = count([_letter(0), _letter(1, error_type="late_event"), _letter(2, processor="engine")])
    assert counts.total == 3
    assert counts.by_error_type == {"undecodable": 2, "late_event": 1}
    assert counts.by_processor == {"fraud-consumer": 2, "engine": 1}


def test_a_re_driven_original_that_fails_again_goes_to_the_quarantine() -> None:
    first = RawMessage("p.transactions", 0, 5, None, b"k", b"v", (("trace", b"1"),))
    again = RawMessage("p.transactions", 0, 9, None, b"k", b"v", (("trace", b"1"), (REDRIVE_HEADER, b"0:5")))
    assert dead_letter_topic(first) == DEAD_LETTER_TOPIC
    assert dead_letter_topic(again) == QUARANTINE_TOPIC


def test_the_plan_skips_what_the_log_holds_and_what_is_quarantined() -> None:
    letters = [
        _letter(0),
        _letter(1, failed_at=NOW - timedelta(minutes=5)),
        _letter(2, headers=((REDRIVE_HEADER, b"0:0"),)),  # re-driven before, written where it was not routed
        _letter(3),
    ]
    done = {letters[3].log_key: RedriveEntry(letters[3].identity, "rd-1", NOW, "p.transactions:1")}
    plan = plan_redrive(letters, done)
    assert [x.id for x in plan.chosen] == ["0:1", "0:0"]  # oldest failure first
    assert [x.id for x in plan.already] == ["0:3"]
    assert [x.id for x in plan.refused] == ["0:2"]

    assert [x.id for x in plan_redrive(letters, done, from_quarantine=True).chosen] == ["0:1", "0:0", "0:2"]
    limited = plan_redrive(letters, done, limit=1)
    assert ([x.id for x in limited.chosen], [x.id for x in limited.over_limit]) == (["0:1"], ["0:0"])


def test_a_log_entry_for_another_envelope_at_the_same_coordinate_does_not_count() -> None:
    """The dead-letter topic was deleted and made again: offset 0 now holds a different envelope."""
    old, new = _letter(0, failed_at=NOW - timedelta(days=3)), _letter(0)
    done = {old.log_key: RedriveEntry(old.identity, "rd-1", NOW, "p.transactions:1")}
    assert plan_redrive([new], done).chosen == [new]


def test_quarantined_letters_are_keyed_apart_from_first_failures() -> None:
    assert _letter(7).log_key == "dead-letter:0:7"
    assert _letter(7, topic=QUARANTINE_TOPIC).log_key == "dead-letter-quarantine:0:7"
    assert _letter(7, topic=QUARANTINE_TOPIC).quarantined


def test_log_entries_round_trip_and_a_bad_one_is_named() -> None:
    entry = RedriveEntry("p.transactions:1:100@17", "rd-x", NOW, "p.transactions:1")
    assert RedriveEntry.decode(entry.encode()) == entry
    with pytest.raises(DeadLetterError, match=r"re-drive log entry b'\{\}' is not a re-drive record"):
        RedriveEntry.decode(b"{}")


def test_redrive_headers_keep_the_original_and_replace_earlier_marks() -> None:
    letter = _letter(3, headers=(("trace", b"abc"), (REDRIVE_HEADER, b"0:0"), (REDRIVE_ID_HEADER, b"rd-old")))
    run = redrive_id(NOW, "1a2b3c4d")
    assert run == "rd-20260301T120000Z-1a2b3c4d"
    assert redrive_headers(letter, run) == [
        ("trace", b"abc"),
        (REDRIVE_HEADER, b"0:3"),
        (REDRIVE_FROM_HEADER, b"dead-letter"),
        (REDRIVE_ID_HEADER, run.encode()),
    ]


def test_the_original_timestamp_is_in_milliseconds() -> None:
    assert _letter(0).source_timestamp_ms == 1_700_000_000_123


def test_hexdump_shows_offsets_hex_and_text_and_what_is_left_out() -> None:
    dump = hexdump(b"\xc3\x01" + b"A" * 30, limit=20)
    lines = dump.splitlines()
    assert lines[0] == "00000000  c3 01 41 41 41 41 41 41 41 41 41 41 41 41 41 41  ..AAAAAAAAAAAAAA"
    assert lines[1].startswith("00000010  41 41 41 41")
    assert lines[2] == "... 12 more bytes (32 in all)"


def test_letter_json_is_plain_data() -> None:
    data = letter_json(_letter(0, headers=(("bin", b"\xff"),)))
    assert data["id"] == "0:0" and data["topic"] == "dead-letter" and not data["quarantined"]
    assert data["original_value_base64"] == "wwFhYmM="
    assert data["original_key"] == "42"
    assert data["original_headers"] == {"bin": {"base64": "/w=="}}
    assert data["failed_at"] == NOW.isoformat()


def test_an_empty_filter_is_the_default_one() -> None:
    """The CLI refuses a re-drive of everything unless asked --all; it recognises "no filter" by equality."""
    assert make_filter(now=NOW) == LetterFilter()
    assert make_filter(now=NOW, reason="x") != LetterFilter()
