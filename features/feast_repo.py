"""Our feature definitions as a Feast 0.67 repository: objects, ``feature_store.yaml`` and a programmatic apply.

Per view of the given feature sets: a ``FileSource`` on ``<offline_dir>/<view>.parquet`` (written by the offline
engine: join keys, ``event_timestamp``, ``created``, one float64 column per feature), a ``PushSource``
``<view>_push`` wrapping it (so ``FeatureStore.push`` works), and a ``FeatureView`` whose schema is the join keys plus
one ``Float64`` per feature. Per feature set, a ``FeatureService`` of its views. Shared entities and views are
registered once; two different declarations under one name are an error.

A Feast ``Entity`` has exactly one join key, so an entity with several (``user_category``: ``user_id``,
``category_id``) maps to one Feast entity per key: the single-key entity with that join key if there is one
(``user``), else a Feast entity named after the key (``category_id``). The Redis key depends only on the join keys'
names, types and values, so this changes nothing in the online layout.

Nothing here imports Feast at module import (it takes seconds): only :func:`feast_objects` and :func:`apply_repo` do.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from slipstream.features.base import Aggregate, Entity, FeatureSet, FeatureView, ViewFeature
from slipstream.features.base import Dtype as KeyDtype
from slipstream.features.exceptions import DefinitionError, OnlineStoreError
from slipstream.features.feast_layout import FEAST_ENTITY_KEY_SERIALIZATION_VERSION, Dtype, ViewLayout
from slipstream.features.redis_client import CONNECT_TIMEOUT_S, is_cluster_url, parse_redis_url
from slipstream.schemas.secrets import mask_url

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = [
    "FeastObjects",
    "FeastRepoConfig",
    "apply_repo",
    "feast_objects",
    "push_source_name",
    "redis_connection_string",
    "view_layouts",
    "write_repo",
]

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created"
_PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")
_LAYOUT_DTYPES: dict[KeyDtype, Dtype] = {"int64": Dtype.INT64, "int32": Dtype.INT32, "string": Dtype.STRING}


def redis_connection_string(url: str) -> str:
    """Feast's ``connection_string`` for ``redis[s]://[user:password@]host[:port][/db]``: ``host:port,db=N[,...]``;
    for a Redis Cluster (``redis[s]+cluster://h1:p1,h2:p2[/0]``) the startup nodes ``h1:p1,h2:p2[,...]`` without a
    ``db`` (Feast hands the parameters to ``RedisCluster``, which refuses one). With TLS, ``ssl=true`` and the TLS
    files of the URL (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``); always a connect timeout
    (:data:`~slipstream.features.redis_client.CONNECT_TIMEOUT_S`, which bounds a TLS handshake too), so Feast fails
    rather than hangs on a wrong port."""
    shown = mask_url(url)
    if not is_cluster_url(url):
        _check_single(url, shown)
    try:
        target = parse_redis_url(url)
    except OnlineStoreError as exc:
        raise DefinitionError(str(exc)) from None  # the message quotes the URL masked
    items = [f"{host}:{port}" for host, port in target.nodes]
    if not target.cluster:
        items.append(f"db={target.db}")
    if target.ssl:
        items.append("ssl=true")
    # Feast json-decodes each value: a JSON string keeps a password such as 123 or true a string.
    params = (
        ("username", target.username),
        ("password", target.password),
        ("ssl_ca_certs", target.ca_file),
        ("ssl_certfile", target.cert_file),
        ("ssl_keyfile", target.key_file),
    )
    for name, value in params:
        if value:
            if "," in value:
                msg = f"redis_url {shown!r}: a {name} with a comma cannot be put in Feast's connection string"
                raise DefinitionError(msg)
            items.append(f"{name}={json.dumps(value)}")
    # Feast's default socket_connect_timeout is none: a TLS client on a plain-text port would wait forever.
    items.append(f"socket_connect_timeout={CONNECT_TIMEOUT_S:g}")
    if target.ssl:
        items.append(f"socket_timeout={CONNECT_TIMEOUT_S:g}")  # bounds the handshake (redis-py waits on reads)
    return ",".join(items)


def _check_single(url: str, shown: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        msg = f"redis_url {shown!r} is not a valid URL (a port that is not a number in 0..65535, or an open '[')"
        raise DefinitionError(msg) from None  # urllib's message quotes the port, or a piece of a malformed password
    db = parts.path.strip("/") or "0"
    host = parts.hostname or ""
    if parts.scheme not in ("redis", "rediss") or not host or ":" in host or not db.isdigit():
        msg = f"redis_url {shown!r} must look like redis://host:port/db (or rediss://; IPv6 hosts are not supported)"
        raise DefinitionError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class FeastRepoConfig:
    """Where the Feast repository lives and which Redis it uses; paths are made absolute."""

    project: str = "slipstream"
    repo_dir: Path
    offline_dir: Path
    redis_url: str
    key_ttl_seconds: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.project, str) or not _PROJECT_NAME.fullmatch(self.project):
            msg = (
                f"Feast project name {self.project!r} must be letters, digits and underscores, "
                "not starting with an underscore"
            )
            raise DefinitionError(msg)
        ttl = self.key_ttl_seconds
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0):
            msg = f"key_ttl_seconds must be a positive number of seconds or None, got {ttl!r}"
            raise DefinitionError(msg)
        redis_connection_string(self.redis_url)
        object.__setattr__(self, "repo_dir", Path(self.repo_dir).absolute())
        object.__setattr__(self, "offline_dir", Path(self.offline_dir).absolute())

    @property
    def connection_string(self) -> str:
        return redis_connection_string(self.redis_url)

    @property
    def redis_type(self) -> str:
        """Feast's ``redis_type``: ``redis_cluster`` for a ``redis+cluster://`` URL, else ``redis``."""
        return "redis_cluster" if is_cluster_url(self.redis_url) else "redis"

    @property
    def registry_path(self) -> Path:
        return self.repo_dir / "registry.db"

    def offline_path(self, view: str) -> Path:
        """The parquet file the offline engine writes for ``view``, and the view's Feast ``FileSource``."""
        return self.offline_dir / f"{view}.parquet"


def push_source_name(view: str) -> str:
    """Name of the ``PushSource`` of ``view`` (``FeatureStore.push(push_source_name(view), df)``)."""
    return f"{view}_push"


def _unique_views(feature_sets: Sequence[FeatureSet]) -> list[FeatureView]:
    views: dict[str, FeatureView] = {}
    set_names: set[str] = set()
    for feature_set in feature_sets:
        if feature_set.name in set_names:
            msg = f"feature set {feature_set.name!r} is given twice"
            raise DefinitionError(msg)
        set_names.add(feature_set.name)
        for view in feature_set.views:
            if views.setdefault(view.name, view) != view:
                msg = f"feature set {feature_set.name!r} declares view {view.name!r} unlike another set does"
                raise DefinitionError(msg)
    if not views:
        msg = f"no feature views in feature sets {sorted(set_names)!r}"
        raise DefinitionError(msg)
    return list(views.values())


def _unique_entities(views: Sequence[FeatureView]) -> list[Entity]:
    entities: dict[str, Entity] = {}
    key_types: dict[str, KeyDtype] = {}
    for view in views:
        entity = view.entity
        if entities.setdefault(entity.name, entity) != entity:
            msg = f"view {view.name!r} declares entity {entity.name!r} unlike another view does"
            raise DefinitionError(msg)
        for key, dtype in zip(entity.join_keys, entity.dtypes, strict=True):
            if key_types.setdefault(key, dtype) != dtype:
                msg = f"join key {key!r} is {dtype!r} in entity {entity.name!r} but {key_types[key]!r} elsewhere"
                raise DefinitionError(msg)
    return list(entities.values())


def _span(delta: timedelta) -> str:
    micros = delta // timedelta(microseconds=1)
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)):
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}us"


def _describe(feature: ViewFeature) -> tuple[str, dict[str, str]]:
    if not isinstance(feature, Aggregate):
        text = f"{feature.numerator} / {feature.denominator} ({feature.default} when the denominator is 0)"
        return text, {"kind": "ratio", "numerator": feature.numerator, "denominator": feature.denominator}
    window = feature.window
    end = f"t - {_span(window.delay)}" if window.delay else "t"
    span = f"(t - {_span(window.length + window.delay)}, {end}]"
    text = f"{feature.agg.value} of {feature.field or 'events'} from {feature.source} in {span}"
    tags = {"kind": "aggregate", "agg": feature.agg.value, "source": feature.source}
    tags |= {"window": _span(window.length), "delay": _span(window.delay), "default": str(feature.default)}
    if feature.field is not None:
        tags["field"] = feature.field
    if feature.where is not None:
        text += f" where {feature.where.field} == {feature.where.value!r}"
        tags["where"] = f"{feature.where.field}=={feature.where.value}"
    return text, tags


@dataclass(frozen=True, slots=True)
class FeastObjects:
    """The Feast objects of some feature sets, each by name (sources and push sources by view name)."""

    entities: dict[str, Any]
    batch_sources: dict[str, Any]
    push_sources: dict[str, Any]
    feature_views: dict[str, Any]
    feature_services: dict[str, Any]

    def all(self) -> list[Any]:
        """Everything, in the order ``FeatureStore.apply`` takes them."""
        groups = (self.entities, self.batch_sources, self.push_sources, self.feature_views, self.feature_services)
        return [obj for group in groups for obj in group.values()]


def feast_objects(feature_sets: Sequence[FeatureSet], config: FeastRepoConfig) -> FeastObjects:
    """Feast entities, sources, feature views and feature services of ``feature_sets``."""
    from feast import Entity as FeastEntity
    from feast import FeatureService, Field, FileSource, PushSource, ValueType
    from feast import FeatureView as FeastFeatureView
    from feast.types import Float64, Int32, Int64, String

    value_types = {"int64": ValueType.INT64, "int32": ValueType.INT32, "string": ValueType.STRING}
    feast_types = {"int64": Int64, "int32": Int32, "string": String}
    views = _unique_views(feature_sets)
    entities = _unique_entities(views)

    by_name: dict[str, Any] = {}
    by_key: dict[str, Any] = {}
    for entity in (e for e in entities if len(e.join_keys) == 1):
        key = entity.join_keys[0]
        feast_entity = FeastEntity(
            name=entity.name, join_keys=[key], value_type=value_types[entity.dtypes[0]], description=entity.description
        )
        by_name[entity.name] = feast_entity
        by_key.setdefault(key, feast_entity)
    entity_names = {e.name for e in entities}
    for entity in (e for e in entities if len(e.join_keys) > 1):
        for key, dtype in zip(entity.join_keys, entity.dtypes, strict=True):
            if key in by_key:
                continue
            if key in entity_names:
                msg = f"join key {key!r} of entity {entity.name!r} needs a Feast entity named {key!r}: name taken"
                raise DefinitionError(msg)
            by_key[key] = by_name[key] = FeastEntity(
                name=key,
                join_keys=[key],
                value_type=value_types[dtype],
                description=f"Join key {key} of {', '.join(e.name for e in entities if key in e.join_keys)}.",
            )

    batch_sources: dict[str, Any] = {}
    push_sources: dict[str, Any] = {}
    feature_views: dict[str, Any] = {}
    for view in views:
        entity = view.entity
        batch = FileSource(
            name=f"{view.name}_offline",
            path=str(config.offline_path(view.name)),
            timestamp_field=EVENT_TIMESTAMP,
            created_timestamp_column=CREATED_TIMESTAMP,
            description=f"Offline engine output of view {view.name}.",
        )
        push = PushSource(name=push_source_name(view.name), batch_source=batch)
        keys = [Field(name=k, dtype=feast_types[t]) for k, t in zip(entity.join_keys, entity.dtypes, strict=True)]
        features = []
        for feature in view.features:
            text, tags = _describe(feature)
            features.append(Field(name=feature.name, dtype=Float64, description=text, tags=tags))
        own = [by_name[entity.name]] if len(entity.join_keys) == 1 else [by_key[k] for k in entity.join_keys]
        feature_views[view.name] = FeastFeatureView(
            name=view.name,
            entities=own,
            schema=keys + features,
            source=push,
            ttl=view.ttl,
            online=True,
            description=view.description,
            tags={"entity": entity.name, "sources": ",".join(s.topic for s in view.sources), "owner": "slipstream"},
        )
        batch_sources[view.name], push_sources[view.name] = batch, push

    services = {
        fs.name: FeatureService(
            name=fs.name,
            features=[feature_views[v.name] for v in fs.views],
            description=f"Views of feature set {fs.name} (trigger topic {fs.trigger}).",
        )
        for fs in feature_sets
    }
    return FeastObjects(by_name, batch_sources, push_sources, feature_views, services)


def view_layouts(feature_sets: Sequence[FeatureSet], project: str) -> dict[str, ViewLayout]:
    """The Redis layout of every view, from our definitions (no Feast): what the writer and reader use."""
    return {
        view.name: ViewLayout(
            project,
            view.name,
            [(name, Dtype.FLOAT64) for name in view.feature_names],
            [(k, _LAYOUT_DTYPES[t]) for k, t in zip(view.entity.join_keys, view.entity.dtypes, strict=True)],
        )
        for view in _unique_views(feature_sets)
    }


def _feature_store_yaml(config: FeastRepoConfig) -> str:
    # JSON strings are valid YAML double-quoted scalars, so paths and passwords need no escaping of our own.
    lines = [
        f"project: {config.project}",
        f"registry: {json.dumps(str(config.registry_path))}",
        "provider: local",
        "online_store:",
        "  type: redis",
        f"  connection_string: {json.dumps(config.connection_string)}",
    ]
    if config.redis_type != "redis":
        lines.append(f"  redis_type: {config.redis_type}")
    if config.key_ttl_seconds is not None:
        lines.append(f"  key_ttl_seconds: {config.key_ttl_seconds}")
    lines += [
        "offline_store:",
        "  type: file",
        f"entity_key_serialization_version: {FEAST_ENTITY_KEY_SERIALIZATION_VERSION}",
    ]
    return "\n".join(lines) + "\n"


def _write_placeholder(path: Path, view: FeatureView) -> bool:
    """An empty, correctly typed parquet file at ``path`` unless one exists (never overwritten); True if written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"int64": pa.int64(), "int32": pa.int32(), "string": pa.string()}
    timestamp = pa.timestamp("us", tz="UTC")
    keys = zip(view.entity.join_keys, view.entity.dtypes, strict=True)
    schema = pa.schema(
        [(k, types[t]) for k, t in keys]
        + [(EVENT_TIMESTAMP, timestamp), (CREATED_TIMESTAMP, timestamp)]
        + [(name, pa.float64()) for name in view.feature_names]
    )
    if path.exists():
        return False
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(schema.empty_table(), tmp)
        os.link(tmp, path)  # atomic and never replaces a file the offline engine wrote meanwhile
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def write_repo(config: FeastRepoConfig, feature_sets: Sequence[FeatureSet]) -> Path:
    """Write ``feature_store.yaml`` and any missing offline parquet placeholders; returns the repository directory."""
    views = _unique_views(feature_sets)
    config.repo_dir.mkdir(parents=True, exist_ok=True)
    config.offline_dir.mkdir(parents=True, exist_ok=True)
    yaml_path = config.repo_dir / "feature_store.yaml"
    text = _feature_store_yaml(config)
    if not yaml_path.exists() or yaml_path.read_text() != text:
        yaml_path.write_text(text)
    for view in views:
        _write_placeholder(config.offline_path(view.name), view)
    return config.repo_dir


def apply_repo(config: FeastRepoConfig, feature_sets: Sequence[FeatureSet]) -> FeatureStore:
    """:func:`write_repo`, then register every object in Feast's registry and online store; safe to run again."""
    from feast import FeatureStore

    repo = write_repo(config, feature_sets)
    store = FeatureStore(repo_path=str(repo))
    store.apply(feast_objects(feature_sets, config).all())
    return store
