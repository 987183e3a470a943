"""The slice file: records round-trip byte for byte, damage and incompleteness are refused, the manifest counts."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from slipstream.replay.exceptions import SliceFormatError
from slipstream.replay.slice_file import MANIFEST, SliceReader, SliceRecord, SliceWriter


def _records(n: int, partition: int = 0) -> list[SliceRecord]:
    return [
        SliceRecord(
            "transactions",
            partition,
            100 + i,
            1_700_000_000_000 + i,
            1,
            f"{i % 7}".encode(),
            bytes([i % 256]) * (i % 50) if i % 11 else None,
            (("trace", b"x" * i), ("empty", None)) if i % 3 else (),
        )
        for i in range(n)
    ]


def test_records_round_trip_with_headers_timestamps_and_nulls(tmp_path: Path) -> None:
    path = tmp_path / "a.slice"
    writer = SliceWriter(path)
    original = {0: _records(3000, 0), 1: _records(5, 1)}
    for partition, records in original.items():
        info = writer.write_records("slice", "transactions", partition, iter(records))
        assert info.records == len(records)
    writer.write_json("schemas/x.avsc", {"type": "string"})
    writer.close({"window": {"from": "a", "to": "b"}})
    with SliceReader(path) as reader:
        reader.verify()
        assert reader.streams("slice") == {
            ("transactions", 0): "records/slice/transactions/0.avro",
            ("transactions", 1): "records/slice/transactions/1.avro",
        }
        assert list(reader.records("slice", "transactions")) == original[0] + original[1]
        assert reader.manifest["members"]["records/slice/transactions/0.avro"]["records"] == 3000
        assert reader.topics("slice") == ["transactions"]
        assert list(reader.records("history", "transactions")) == []


def test_a_damaged_member_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.slice"
    writer = SliceWriter(path)
    writer.write_records("slice", "labels", 2, iter(_records(50)))
    writer.close({})
    damaged = tmp_path / "b.slice"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith(".avro"):
                data = data[:-40] + bytes(40)
            dst.writestr(item, data)
    with SliceReader(damaged) as reader, pytest.raises(SliceFormatError, match=r"records/slice/labels/2.avro.*damaged"):
        reader.verify()


def test_an_interrupted_recording_is_not_a_slice(tmp_path: Path) -> None:
    path = tmp_path / "a.slice"
    writer = SliceWriter(path)
    writer.write_records("slice", "labels", 0, iter(_records(5)))
    writer._zip.close()
    with pytest.raises(SliceFormatError, match=f"not a complete slice.*{MANIFEST}"):
        SliceReader(path)
    writer = SliceWriter(tmp_path / "b.slice")
    writer.abort()
    assert not (tmp_path / "b.slice").exists()


def test_other_files_are_refused_with_their_name(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SliceFormatError, match="notes.txt"):
        SliceReader(tmp_path / "notes.txt")
    with pytest.raises(SliceFormatError, match="does not exist"):
        SliceReader(tmp_path / "missing.slice")
    newer = tmp_path / "newer.slice"
    with zipfile.ZipFile(newer, "w") as z:
        z.writestr(MANIFEST, '{"format": "slipstream-slice", "format_version": 99, "members": {}}')
    with pytest.raises(SliceFormatError, match="format version 99"):
        SliceReader(newer)


def test_unknown_part_is_refused() -> None:
    from slipstream.replay.slice_file import member_name

    with pytest.raises(SliceFormatError, match="'later'"):
        member_name("later", "transactions", 0)
