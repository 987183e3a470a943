"""``slipstream.features.feast_layout`` is byte-identical to what Feast 0.67's RedisOnlineStore writes and reads.

Every expectation comes from Feast's own code: ``serialize_entity_key``/``_redis_key``, ``_mmh3``, the protobuf
classes, ``python_values_to_proto_values`` (the conversion ``write_to_online_store`` uses) and
``RedisOnlineStore.online_write_batch`` itself, run against a recording stand-in for the Redis client.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.type_map import python_values_to_proto_values
from feast.types import Bool, Float32, Float64, Int32, Int64, String
from google.protobuf.timestamp_pb2 import Timestamp

from slipstream.features.feast_layout import (
    FEAST_ENTITY_KEY_SERIALIZATION_VERSION,
    Dtype,
    FeatureValue,
    LayoutError,
    ReadPlan,
    ViewLayout,
    decode_timestamp,
    decode_value,
    encode_timestamp,
    encode_value,
    feature_field,
    redis_key,
    timestamp_field,
)

PROJECT = "slipstream_test"
T0 = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


def entity_key(**values: ValueProto) -> EntityKeyProto:
    return EntityKeyProto(join_keys=list(values), entity_values=list(values.values()))


def test_feast_default_serialization_version_is_ours() -> None:
    config = RepoConfig(project=PROJECT, registry="registry.db", provider="local", online_store={"type": "redis"})
    assert config.entity_key_serialization_version == FEAST_ENTITY_KEY_SERIALIZATION_VERSION == 3


@pytest.mark.parametrize(
    ("join_keys", "feast_key"),
    [
        ({"customer_id": 1}, entity_key(customer_id=ValueProto(int64_val=1))),
        ({"customer_id": -(2**63)}, entity_key(customer_id=ValueProto(int64_val=-(2**63)))),
        ({"customer_id": 2**63 - 1}, entity_key(customer_id=ValueProto(int64_val=2**63 - 1))),
        ({"card": "4111-ü-€"}, entity_key(card=ValueProto(string_val="4111-ü-€"))),
        ({"card": ""}, entity_key(card=ValueProto(string_val=""))),
        (
            {"merchant_id": "m-7", "customer_id": 42},
            entity_key(merchant_id=ValueProto(string_val="m-7"), customer_id=ValueProto(int64_val=42)),
        ),
        (
            {"b": 2, "a": 1, "ab": "x"},
            entity_key(b=ValueProto(int64_val=2), a=ValueProto(int64_val=1), ab=ValueProto(string_val="x")),
        ),
    ],
)
def test_redis_key_matches_feast(join_keys: dict[str, int | str], feast_key: EntityKeyProto) -> None:
    expected = _redis_key(PROJECT, feast_key, entity_key_serialization_version=3)
    assert expected == serialize_entity_key(feast_key, entity_key_serialization_version=3) + PROJECT.encode()
    assert redis_key(PROJECT, join_keys) == expected
    dtypes = [(name, Dtype.STRING if isinstance(v, str) else Dtype.INT64) for name, v in join_keys.items()]
    assert ViewLayout(PROJECT, "v", [("f", Float64)], dtypes).key(join_keys) == expected


def test_int32_join_key_through_a_layout() -> None:
    layout = ViewLayout(PROJECT, "v", [("f", Float64)], [("shard", Int32), ("customer_id", Int64)])
    feast_key = entity_key(shard=ValueProto(int32_val=-3), customer_id=ValueProto(int64_val=9))
    assert layout.key({"customer_id": 9, "shard": -3}) == _redis_key(PROJECT, feast_key)


@pytest.mark.parametrize(
    ("join_keys", "message"),
    [
        ({"customer_id": "1"}, "'1' (str) is not a valid Int64"),
        ({"customer_id": True}, "True (bool) is not a valid Int64"),
        ({"customer_id": 2**63}, "9223372036854775808 (int) is not a valid Int64"),
        ({"customer": 1}, "join key 'customer_id' missing from {'customer': 1}"),
        ({"customer_id": 1, "x": 2}, "has join keys ['customer_id'], got {'customer_id': 1, 'x': 2}"),
    ],
)
def test_bad_join_keys_are_named(join_keys: dict[str, Any], message: str) -> None:
    layout = ViewLayout(PROJECT, "v", [("f", Float64)], [("customer_id", Int64)])
    with pytest.raises(LayoutError) as caught:
        layout.key(join_keys)
    assert message in str(caught.value)


def test_only_serialization_version_3() -> None:
    with pytest.raises(LayoutError, match="entity_key_serialization_version 2 is not supported"):
        redis_key(PROJECT, {"customer_id": 1}, entity_key_serialization_version=2)


@pytest.mark.parametrize(
    "name",
    ["", "a", "ab", "abc", "abcd", "abcde", "customer_features:amount_sum_1h", "ü€😀:中", "x" * 1000],
)
def test_feature_field_is_feast_mmh3(name: str) -> None:
    view, _, feature = name.partition(":")
    assert feature_field(view, feature) == _mmh3(f"{view}:{feature}")


def test_fields_match_the_online_store_read_path() -> None:
    view = feast_view()
    requested, hset_keys = RedisOnlineStore()._generate_hset_keys_for_features(view)
    layout = ViewLayout.from_feature_view(PROJECT, view)
    assert [n for n, _ in layout.features] == requested[:-1]
    # redis-py sends str fields as utf-8
    assert list(layout.fields) == [k if isinstance(k, bytes) else k.encode() for k in hset_keys]
    assert layout.timestamp_field == timestamp_field(view.name) == b"_ts:customer_features"


FEAST_TYPES: dict[Dtype, tuple[Any, ValueType]] = {
    Dtype.FLOAT64: (Float64, ValueType.DOUBLE),
    Dtype.FLOAT32: (Float32, ValueType.FLOAT),
    Dtype.INT64: (Int64, ValueType.INT64),
    Dtype.INT32: (Int32, ValueType.INT32),
    Dtype.STRING: (String, ValueType.STRING),
    Dtype.BOOL: (Bool, ValueType.BOOL),
}
VALUES: list[tuple[Dtype, Any]] = [
    *((Dtype.FLOAT64, v) for v in (0.0, -0.0, 1.5, -1e-300, 1e300, math.inf, -math.inf, 7)),
    *((Dtype.FLOAT32, v) for v in (0.0, 1.1, -2.5, 3.4e38, 3)),
    *((Dtype.INT64, v) for v in (0, 1, -1, 127, 128, -300, 2**63 - 1, -(2**63))),
    *((Dtype.INT32, v) for v in (0, 1, -1, 2**31 - 1, -(2**31))),
    *((Dtype.STRING, v) for v in ("", "a", "ü€😀", "x" * 300)),
    *((Dtype.BOOL, v) for v in (True, False)),
    *((dtype, None) for dtype in Dtype),
]


@pytest.mark.parametrize(("dtype", "value"), VALUES)
def test_encode_value_matches_feast(dtype: Dtype, value: Any) -> None:
    feast_type, value_type = FEAST_TYPES[dtype]
    (proto,) = python_values_to_proto_values([value], value_type)
    expected = proto.SerializeToString()
    assert encode_value(value, dtype) == expected
    assert encode_value(value, feast_type) == expected  # Feast type objects are accepted too
    decoded = decode_value(expected)
    if dtype is Dtype.FLOAT32 and value is not None:
        assert decoded == pytest.approx(value, rel=1e-7)
    else:
        assert decoded == value
        assert type(decoded) is type(float(value) if dtype is Dtype.FLOAT64 and value is not None else value)


def test_nan_and_subclasses() -> None:
    nan = encode_value(math.nan, Dtype.FLOAT64)
    assert nan == ValueProto(double_val=math.nan).SerializeToString()
    assert math.isnan(decode_value(nan))  # type: ignore[arg-type]

    class Level(enum.IntEnum):
        HIGH = 3

    assert encode_value(Level.HIGH, Dtype.INT64) == ValueProto(int64_val=3).SerializeToString()


@pytest.mark.parametrize(
    ("value", "dtype", "message"),
    [
        ("1.5", Dtype.FLOAT64, "'1.5' (str) is not a valid Float64 feature value"),
        (True, Dtype.FLOAT64, "True (bool) is not a valid Float64"),
        (1.5, Dtype.INT64, "1.5 (float) is not a valid Int64"),
        (2**31, Dtype.INT32, "2147483648 (int) is not a valid Int32"),
        (1, Dtype.BOOL, "1 (int) is not a valid Bool"),
        (1e39, Dtype.FLOAT32, "1e+39 (float) is not a valid Float32"),
        (b"x", Dtype.STRING, "b'x' (bytes) is not a valid String"),
        ("\ud800", Dtype.STRING, "'\\ud800' (str) is not a valid String"),
    ],
)
def test_bad_values_are_quoted(value: Any, dtype: Dtype, message: str) -> None:
    with pytest.raises(LayoutError) as caught:
        encode_value(value, dtype)
    assert message in str(caught.value)


def test_unsupported_dtype_and_unknown_bytes() -> None:
    with pytest.raises(LayoutError, match="unsupported feature dtype 'Bytes'"):
        encode_value("x", "Bytes")
    with pytest.raises(LayoutError, match="not a scalar feast Value"):
        decode_value(ValueProto(bytes_val=b"x").SerializeToString())
    with pytest.raises(LayoutError, match="not a scalar feast Value"):
        decode_value(b"\x29\x00")


@pytest.mark.parametrize(
    "event_time",
    [
        T0,
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        datetime(1900, 1, 1, 0, 0, 0, 7, tzinfo=timezone(timedelta(hours=-3))),
        datetime(2024, 3, 31, 2, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_timestamp_matches_protobuf(event_time: datetime) -> None:
    ts = Timestamp()
    ts.FromDatetime(event_time)
    assert encode_timestamp(event_time) == ts.SerializeToString()
    decoded = decode_timestamp(ts.SerializeToString())
    assert decoded == event_time
    assert decoded.tzinfo is UTC


def test_naive_event_time_is_refused_and_quoted() -> None:
    naive = datetime(2024, 5, 1, 12, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(LayoutError, match=r"naive datetime\.datetime\(2024, 5, 1, 12, 0\)"):
        encode_timestamp(naive)


def feast_view() -> FeatureView:
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    return FeatureView(
        name="customer_features",
        entities=[customer],
        schema=[
            Field(name="customer_id", dtype=Int64),
            Field(name="amount_sum_1h", dtype=Float64),
            Field(name="txn_count_1h", dtype=Int64),
            Field(name="ratio_f32", dtype=Float32),
            Field(name="country", dtype=String),
            Field(name="is_night", dtype=Bool),
        ],
        source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
    )


class RecordingPipeline:
    """Enough of redis-py's pipeline for ``online_write_batch(skip_dedup=True)``: records each HSET."""

    def __init__(self) -> None:
        self.hsets: list[tuple[bytes, dict[bytes, bytes]]] = []

    def __enter__(self) -> RecordingPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def hset(self, name: bytes, mapping: dict[str | bytes, bytes]) -> None:
        # redis-py sends str fields as utf-8
        self.hsets.append((name, {(k if isinstance(k, bytes) else k.encode()): v for k, v in mapping.items()}))

    def execute(self) -> list[int]:
        return [1] * len(self.hsets)


class RecordingClient:
    def __init__(self) -> None:
        self.pipe = RecordingPipeline()

    def pipeline(self, transaction: bool = True) -> RecordingPipeline:
        return self.pipe


@pytest.fixture
def feast_writes() -> Iterator[tuple[RedisOnlineStore, RepoConfig, RecordingClient]]:
    config = RepoConfig(
        project=PROJECT,
        registry="registry.db",
        provider="local",
        online_store=RedisOnlineStoreConfig(skip_dedup=True),
        entity_key_serialization_version=3,
    )
    store, client = RedisOnlineStore(), RecordingClient()
    store._client = client  # type: ignore[assignment]
    yield store, config, client


def test_row_mapping_equals_feasts_own_write(
    feast_writes: tuple[RedisOnlineStore, RepoConfig, RecordingClient],
) -> None:
    store, config, client = feast_writes
    view = feast_view()
    row: dict[str, FeatureValue] = {
        "amount_sum_1h": 12.5,
        "txn_count_1h": 3,
        "ratio_f32": 0.25,
        "country": "NL",
        "is_night": False,
    }
    protos = {
        name: python_values_to_proto_values([value], FEAST_TYPES[Dtype(str(field.dtype))][1])[0]
        for field in view.features
        for name, value in [(field.name, row[field.name])]
    }
    store.online_write_batch(config, view, [(entity_key(customer_id=ValueProto(int64_val=7)), protos, T0, None)], None)
    ((feast_key, feast_mapping),) = client.pipe.hsets

    layout = ViewLayout.from_feature_view(PROJECT, view)
    assert layout.key({"customer_id": 7}) == feast_key
    assert layout.row_mapping(row, T0) == feast_mapping


def test_decode_agrees_with_feasts_read_path() -> None:
    view = feast_view()
    layout = ViewLayout.from_feature_view(PROJECT, view)
    row: dict[str, FeatureValue] = {
        "amount_sum_1h": -1.0,
        "txn_count_1h": None,
        "ratio_f32": 0.5,
        "country": "ü",
        "is_night": True,
    }
    mapping = layout.row_mapping(row, T0)
    replies = [mapping.get(field) for field in layout.fields]
    requested, _ = RedisOnlineStore()._generate_hset_keys_for_features(view)
    feast_time, feast_values = RedisOnlineStore()._get_features_for_entity(replies, view.name, requested)

    decoded = layout.decode(replies)
    assert decoded == (row, T0)
    assert feast_time == T0
    assert feast_values is not None
    kinds = {k: v.WhichOneof("val") for k, v in feast_values.items()}
    as_python = {k: getattr(v, str(kinds[k])) if kinds[k] else None for k, v in feast_values.items()}
    assert as_python == row


def test_row_mapping_refuses_missing_and_unknown_features() -> None:
    layout = ViewLayout(PROJECT, "v", [("a", Float64), ("b", Int64)], [("customer_id", Int64)])
    with pytest.raises(LayoutError, match="feature 'b' missing from row {'a': 1.0}"):
        layout.row_mapping({"a": 1.0}, T0)
    with pytest.raises(LayoutError, match=r"view 'v' has no features \['c'\]"):
        layout.row_mapping({"a": 1.0, "b": 2, "c": 3}, T0)


@pytest.mark.parametrize(
    ("features", "join_keys", "message"),
    [
        ([], [("id", Int64)], "needs a name and distinct feature names, got []"),
        ([("a", Int64), ("a", Float64)], [("id", Int64)], "got ['a', 'a']"),
        ([("a", Int64)], [], "needs distinct join keys, got []"),
        ([("a", Int64)], [("id", Float64)], "join key 'id' of view 'v' has dtype 'Float64'"),
        ([("a", "Decimal")], [("id", Int64)], "unsupported feature dtype 'Decimal'"),
    ],
)
def test_bad_layouts_are_named(features: list[Any], join_keys: list[Any], message: str) -> None:
    with pytest.raises(LayoutError) as caught:
        ViewLayout(PROJECT, "v", features, join_keys)
    assert message in str(caught.value)


def test_read_plan_groups_views_by_key_and_names_features() -> None:
    customer_a = ViewLayout(PROJECT, "cust_a", [("x", Float64)], [("customer_id", Int64)])
    merchant = ViewLayout(PROJECT, "merch", [("y", Int64)], [("merchant_id", String)])
    customer_b = ViewLayout(PROJECT, "cust_b", [("z", Bool)], [("customer_id", Int64)])
    plan = ReadPlan([customer_a, merchant, customer_b])

    assert plan.names == ("x", "z", "y")  # grouped: the two customer views share one Redis key and one HMGET
    keys = plan.keys({"customer_id": 1, "merchant_id": "m"})
    assert keys == [redis_key(PROJECT, {"customer_id": 1}), redis_key(PROJECT, {"merchant_id": "m"})]

    a, b = customer_a.row_mapping({"x": 2.5}, T0), customer_b.row_mapping({"z": True}, T0 + timedelta(seconds=1))
    customer_reply = [a[f] for f in customer_a.fields] + [b[f] for f in customer_b.fields]
    found = plan.decode([customer_reply, [None, None]])
    assert found is not None
    assert found.values == {"x": 2.5, "z": True, "y": None}
    assert found.event_times == {"cust_a": T0, "cust_b": T0 + timedelta(seconds=1)}
    assert plan.decode([[None] * 4, [None, None]]) is None

    assert ReadPlan([customer_a, merchant], full_feature_names=True).names == ("cust_a__x", "merch__y")
    with pytest.raises(LayoutError, match=r"distinct across views .* got \['x', 'x'\]"):
        ReadPlan([customer_a, ViewLayout(PROJECT, "other", [("x", Int64)], [("customer_id", Int64)])])
