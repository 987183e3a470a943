"""The window-state bytes: binary round trips, the JSON format before it, and clear errors on bad bytes."""

from __future__ import annotations

import random
from array import array

import orjson
import pytest

from slipstream.features.exceptions import StateFormatError
from slipstream.features.state_codec import MAGIC, column_of, new_column
from slipstream.features.windows import EntityState, Ring, event_id_int


def _state(seed: int = 7, n: int = 40) -> EntityState:
    rng = random.Random(seed)
    state = EntityState()
    for i in range(n):
        t = 1_700_000_000_000_000 + i * 1_000_000
        state.ring("transactions").insert(
            t, rng.getrandbits(62), t, {"amount": rng.random() * 100, "terminal_id": rng.randrange(10_000)}
        )
        state.ring("labels").insert(t, rng.getrandbits(62), t + 7, {"is_fraud": rng.random() < 0.2})
        state.ring("interactions").insert(t, -rng.getrandbits(62), t, {"action": rng.choice(["VIEW", "CLICK"])})
    state.newest_us = 1_700_000_000_000_000 + n * 1_000_000
    return state


def _plain(state: EntityState) -> dict[str, object]:
    return {
        "n": state.newest_us,
        "r": {
            k: [list(r.times), list(r.ids), list(r.known), {f: list(c) for f, c in r.values.items()}]
            for k, r in state.rings.items()
        },
    }


def test_binary_round_trip_keeps_every_value_and_column_type() -> None:
    state = _state()
    data = state.to_bytes()
    assert data.startswith(MAGIC)
    back = EntityState.from_bytes(data)
    assert _plain(back) == _plain(state)
    tx = back.rings["transactions"]
    assert isinstance(tx.times, array) and tx.times.typecode == "q"
    assert isinstance(tx.values["amount"], array) and tx.values["amount"].typecode == "d"
    assert isinstance(tx.values["terminal_id"], array) and tx.values["terminal_id"].typecode == "q"
    assert back.rings["labels"].values["is_fraud"].typecode == "q"  # type: ignore[attr-defined]
    assert isinstance(back.rings["interactions"].values["action"], list)
    assert back.to_bytes() == data  # deterministic: the same state always gives the same bytes


def test_states_written_as_json_before_the_binary_format_still_read() -> None:
    state = _state(seed=3)
    legacy = orjson.dumps(  # what the JSON format wrote: plain lists, booleans as true / false
        {
            "n": state.newest_us,
            "r": {
                k: [
                    list(r.times),
                    list(r.ids),
                    list(r.known),
                    {f: [bool(v) for v in c] if f == "is_fraud" else list(c) for f, c in r.values.items()},
                ]
                for k, r in state.rings.items()
            },
        }
    )
    assert b"true" in legacy and b"false" in legacy
    back = EntityState.from_bytes(legacy)
    assert _plain(back) == _plain(state)
    assert back.to_bytes() == state.to_bytes()  # rewritten in the binary format on the next write


def test_a_field_added_or_removed_between_releases_keeps_columns_aligned() -> None:
    ring = Ring()
    ring.insert(1, 1, 1, {"amount": 1.0, "old": 7})
    ring.insert(2, 2, 2, {"amount": 2.0, "old": 8})
    ring.insert(3, 3, 3, {"amount": 3.0, "new": 9})  # "old" dropped from the source, "new" added
    assert set(ring.values) == {"amount", "new"}
    assert list(ring.values["new"]) == [None, None, 9]
    back = EntityState.from_bytes(EntityState({"t": ring}, 3).to_bytes())
    assert _plain(back)["r"] == {
        "t": [[1, 2, 3], [1, 2, 3], [1, 2, 3], {"amount": [1.0, 2.0, 3.0], "new": [None, None, 9]}]
    }


def test_integer_ids_beyond_int64_are_hashed_into_it() -> None:
    big = event_id_int(2**64 + 5)
    assert -(2**63) <= big < 2**63 and big == event_id_int(2**64 + 5) and big != event_id_int(2**64 + 6)
    assert event_id_int(2**63 - 1) == 2**63 - 1
    ring = Ring()
    assert ring.insert(1, big, 1, {})
    assert not ring.insert(1, big, 1, {})


def test_an_empty_state_round_trips() -> None:
    assert _plain(EntityState.from_bytes(EntityState().to_bytes())) == _plain(EntityState())


@pytest.mark.parametrize("cut", [1, 5, 20, -1])
def test_truncated_bytes_are_refused_with_the_reason(cut: int) -> None:
    data = _state().to_bytes()
    with pytest.raises(StateFormatError, match="truncated"):
        EntityState.from_bytes(data[: len(MAGIC) + cut] if cut > 0 else data[:cut])


def test_unknown_formats_and_trailing_bytes_are_refused() -> None:
    with pytest.raises(StateFormatError, match="unknown state format"):
        EntityState.from_bytes(b"\x00\x01garbage")
    with pytest.raises(StateFormatError, match="left over"):
        EntityState.from_bytes(_state().to_bytes() + b"\x00")
    with pytest.raises(StateFormatError, match="unreadable JSON state"):
        EntityState.from_bytes(b'{"n": 1}')
    with pytest.raises(StateFormatError, match="unreadable JSON state"):
        EntityState.from_bytes(b'{"n": 1, "r": []}')


def test_bad_names_and_bad_json_columns_are_refused_with_the_reason() -> None:
    ring = Ring()
    ring.insert(1, 1, 1, {"action": "VIEW"})
    data = EntityState({"t": ring}, 1).to_bytes()
    with pytest.raises(StateFormatError, match="not UTF-8"):
        EntityState.from_bytes(data.replace(b"action", b"\xff\xfection"))
    with pytest.raises(StateFormatError, match="not JSON"):
        EntityState.from_bytes(data.replace(b'["VIEW"]', b'["VIEW"}'))
    with pytest.raises(StateFormatError, match="not a list of 1 values"):
        EntityState.from_bytes(data.replace(b'["VIEW"]', b'{"V":1 }'))


def test_a_column_shorter_than_its_ring_is_not_written() -> None:
    state = _state()
    column = state.rings["transactions"].values["amount"]
    del column[0]
    with pytest.raises(StateFormatError, match="'amount'"):
        state.to_bytes()


def test_a_value_its_typed_column_cannot_hold_turns_the_column_into_a_list() -> None:
    ring = Ring()
    assert ring.insert(1, 1, 1, {"x": 5})
    assert type(ring.values["x"]).__name__ == "array"
    assert ring.insert(2, 2, 2, {"x": 2.5})  # an int array cannot hold a float
    assert type(ring.values["x"]).__name__ == "list"
    assert list(ring.values["x"]) == [5, 2.5]
    assert ring.insert(3, 3, 3, {"x": None})  # type: ignore[dict-item]  # an optional field's missing value
    assert list(ring.values["x"]) == [5, 2.5, None]
    assert _plain(EntityState.from_bytes(EntityState({"t": ring}, 3).to_bytes()))["r"] == {
        "t": [[1, 2, 3], [1, 2, 3], [1, 2, 3], {"x": [5, 2.5, None]}]
    }


def test_duplicates_are_found_in_the_int64_ids() -> None:
    ring = Ring()
    ids = [2**62 + 5, -(2**40), 0, 255, 256, 65_536 * 255]
    for i, event_id in enumerate(ids):
        assert ring.insert(i, event_id, i, {})
    for i, event_id in enumerate(ids):
        assert not ring.insert(i + 100, event_id, i, {})
    # ids whose bytes appear inside other ids at an unaligned offset are not duplicates
    assert ring.insert(50, 1, 50, {})
    assert ring.insert(51, 65_536, 51, {})
    assert len(ring) == len(ids) + 2


def test_column_choice() -> None:
    assert array("d").typecode == new_column(1.5).typecode  # type: ignore[attr-defined]
    assert new_column(True).typecode == "q"  # type: ignore[attr-defined]
    assert isinstance(new_column("VIEW"), list)
    assert isinstance(column_of([1.0, 2]), list)  # mixed: kept exactly as they are
    assert column_of([1.0, 2.0]).typecode == "d"  # type: ignore[attr-defined]
    assert column_of([True, 3]).typecode == "q"  # type: ignore[attr-defined]
    assert isinstance(column_of([2**64]), list)
    assert isinstance(column_of([]), list)
