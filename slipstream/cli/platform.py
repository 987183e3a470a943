"""`slipstream infra ...` and `slipstream topics ...`: the local platform and topics as code."""

from __future__ import annotations

import json
import re
import sys
from typing import Annotated

import typer
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.exceptions import InputError
from slipstream.infra.docker_engine import engine_version, ensure_engine
from slipstream.infra.docker_platform import find_docker
from slipstream.infra.exceptions import DependencyMissingError
from slipstream.infra.stack_images import StackImages
from slipstream.schemas.exceptions import TopicError
from slipstream.schemas.secrets import mask_url, mask_urls
from slipstream.schemas.topics import validate_prefix
from slipstream.schemas.transport import TopicChange

infra_app = typer.Typer(help="Start, stop and inspect the local Kafka (KRaft) and Redis.", no_args_is_help=True)
topics_app = typer.Typer(
    help="Topics as code: every topic declared once, applied idempotently; throwaway namespaces deleted by prefix.",
    no_args_is_help=True,
)
_FEAST_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")

Backend = Annotated[
    str | None,
    typer.Option(
        help="auto (Docker when an engine answers, else local), local or docker.", envvar="SLIPSTREAM_BACKEND"
    ),
]
Brokers = Annotated[
    int | None,
    typer.Option(
        help="Kafka nodes: 1, or 3 for a local KRaft cluster (every node broker + controller, ports kafka_port+2*i; "
        "topics get 3 replicas and min.insync.replicas 2).",
        envvar="SLIPSTREAM_KAFKA_BROKERS",
    ),
]
RedisCluster = Annotated[
    bool | None,
    typer.Option(
        "--redis-cluster/--no-redis-cluster",
        help="Redis as a local Redis Cluster of three masters (ports redis_cluster_port+0..2, default 7100); "
        "its URL is redis+cluster://127.0.0.1:7100,... .",
        envvar="SLIPSTREAM_REDIS_CLUSTER",
    ),
]
RedisTLS = Annotated[
    bool | None,
    typer.Option(
        "--redis-tls/--no-redis-tls",
        help="Redis with TLS only (on redis_port) and an ACL login: CA, certificate and password made once in "
        "<state_dir>/redis/tls; its URL is rediss://slipstream:***@127.0.0.1:6379/0?ssl_ca_certs=... .",
        envvar="SLIPSTREAM_REDIS_TLS",
    ),
]
KafkaSASL = Annotated[
    bool | None,
    typer.Option(
        "--kafka-sasl/--no-kafka-sasl",
        help="Kafka with a SASL_SSL listener only (on kafka_port; SCRAM-SHA-512 user slipstream): CA, certificate and "
        "password made once in <state_dir>/kafka/sasl; every slipstream command then logs in with them. Local "
        "backend, one broker; switching needs `infra down --wipe`.",
        envvar="SLIPSTREAM_KAFKA_SASL",
    ),
]
Prefix = Annotated[
    str | None, typer.Option(help="Namespace prepended to every topic name.", envvar="SLIPSTREAM_TOPIC_PREFIX")
]


@infra_app.command()
def up(
    backend: Backend = None,
    topics: Annotated[bool, typer.Option(help="Also apply the topics.")] = True,
    brokers: Brokers = None,
    redis_cluster: RedisCluster = None,
    redis_tls: RedisTLS = None,
    kafka_sasl: KafkaSASL = None,
) -> None:
    """Start Kafka 4 (KRaft) and Redis if they are not running, wait until they answer, apply the topics.

    Safe to repeat: running services are reused. Jars are resolved once from Maven Central into the cache.
    With --brokers 3: three Kafka nodes on 127.0.0.1, node n on kafka_port+2*(n-1) (9092, 9094, 9096).
    """
    with friendly_errors():
        app = build(
            backend=backend,
            kafka_brokers=brokers,
            redis_cluster=redis_cluster,
            redis_tls=redis_tls,
            kafka_sasl=kafka_sasl,
        )
        statuses = app.platform.up()
        for status in statuses.values():
            address = mask_url(status.address)
            if status.name == "kafka":
                address = app.kafka.describe()  # e.g. 127.0.0.1:9092 (SASL_SSL, SCRAM-SHA-512 as slipstream)
            console.print(f"[green]✓[/green] {status.name} {status.version or ''} at {address} ({status.backend})")
        if topics:
            _print_changes(app.apply_topics())


@infra_app.command()
def down(
    wipe: Annotated[bool, typer.Option(help="Also delete the broker's data (a fresh cluster next time).")] = False,
    brokers: Brokers = None,
    redis_cluster: RedisCluster = None,
    redis_tls: RedisTLS = None,
    kafka_sasl: KafkaSASL = None,
) -> None:
    """Stop the services that `slipstream infra up` started (and nothing else); every Kafka node of a cluster."""
    with friendly_errors():
        app = build(kafka_brokers=brokers, redis_cluster=redis_cluster, redis_tls=redis_tls, kafka_sasl=kafka_sasl)
        app.platform.down(wipe=wipe)
        console.print("[green]✓[/green] stopped")


@infra_app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    brokers: Brokers = None,
    redis_cluster: RedisCluster = None,
    redis_tls: RedisTLS = None,
    kafka_sasl: KafkaSASL = None,
) -> None:
    """Show whether Kafka and Redis are up, where, and which versions; with --brokers 3, each Kafka node too."""
    with friendly_errors():
        app = build(kafka_brokers=brokers, redis_cluster=redis_cluster, redis_tls=redis_tls, kafka_sasl=kafka_sasl)
        report = {  # addresses and details may quote a URL: never its credentials
            name: {key: mask_urls(value) if isinstance(value, str) else value for key, value in info.items()}
            for name, info in app.platform.status_json().items()
        }
        if as_json:
            out.print_json(json.dumps(report))
            return
        table = Table("service", "up", "address", "version", "backend")
        for name, info in report.items():
            address = str(info.get("bootstrap_servers") or info.get("url") or "")
            table.add_row(
                name,
                "yes" if info.get("up") else "no",
                address,
                str(info.get("version") or ""),
                str(info.get("backend") or ""),
            )
        out.print(table)
        if not all(info.get("up") for info in report.values()):
            raise typer.Exit(1)


@infra_app.command()
def images(
    rebuild: Annotated[bool, typer.Option(help="Build the three local images again, even when cached.")] = False,
    stack: Annotated[
        bool,
        typer.Option(
            help="Also Slipstream's own image (slipstream/slipstream:local, the Dockerfile of this checkout) and "
            "Prometheus's: the images of deploy/compose/docker-compose.yml (with --rebuild: these two again)."
        ),
    ] = False,
    start_engine: Annotated[
        bool, typer.Option(help="Start the Docker engine (dockerd, as root) when none answers `docker info`.")
    ] = True,
) -> None:
    """Build (or find, cached) the local container images of the throwaway platforms, and show them.

    Throwaway platforms (one job's Kafka and Redis, removed afterwards; the
    tests' with SLIPSTREAM_TEST_BACKEND=testcontainers) run the official apache/kafka and
    redis:7-alpine images when the Docker engine has them or can pull them.
    Where no image registry answers, they run three images built here from
    Debian packages and the Kafka jars already resolved from Maven Central:

    - slipstream/debian-base:bookworm: debootstrap, ~35 s once (the rootfs is
      cached under ~/.cache/slipstream/images);

    - slipstream/kafka:<version>: JRE 17 + the jars, ~20 s;

    - slipstream/redis:7: Debian's redis-server, ~5 s.

    With --stack, also the compose stack's (docs/deploy.md): slipstream/slipstream:local (every `slipstream`
    command, non-root; the locked dependencies installed by uv) and slipstream/prometheus:bookworm.

    Each image is labelled with a hash of its inputs; a build is skipped when
    the label matches. The table shows each image's size and how long its last
    build took.
    """

    def say(text: str) -> None:
        console.print(f"[dim]{text}[/dim]", highlight=False)

    with friendly_errors():
        config = build().platform_config
        docker = find_docker()
        if start_engine:
            docker = ensure_engine(say, install=False).docker
        elif docker is None or engine_version(docker) is None:
            msg = "no Docker engine answers `docker info`; start one, or pass --start-engine (as root)"
            raise DependencyMissingError(msg)
        table = Table("image", "size", "last build", "this run")
        builder = StackImages(config, docker, say)
        built = builder.local_images(rebuild=rebuild)
        if stack:
            built += [builder.app(rebuild=rebuild), builder.prometheus(rebuild=rebuild)]
        for image in built:
            size = f"{image.size_bytes / 1e6:,.0f} MB" if image.size_bytes is not None else "?"
            last = f"{image.build_seconds:.1f} s" if image.build_seconds is not None else "?"
            table.add_row(image.name, size, last, f"built in {image.seconds:.1f} s" if image.built else "cached")
        out.print(table)


@topics_app.command("apply")
def topics_apply(prefix: Prefix = None) -> None:
    """Create missing topics, grow partitions and align configs to the declarations. Never deletes."""
    with friendly_errors():
        _print_changes(build(topic_prefix=prefix).apply_topics())


@topics_app.command("list")
def topics_list(prefix: Prefix = None) -> None:
    """The declared topics, and whether each exists on the broker."""
    with friendly_errors():
        app = build(topic_prefix=prefix)
        existing = app.topic_admin().existing()
        table = Table("topic", "partitions", "retention", "cleanup", "key", "value schema", "on broker")
        for spec in app.contracts.catalog:
            name = app.contracts.catalog.prefix + spec.name
            days = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms / 86_400_000:g} d"
            on_broker = f"yes ({existing[name]})" if name in existing else "[red]no[/red]"
            table.add_row(
                name,
                str(spec.partitions),
                days,
                spec.cleanup_policy,
                spec.key_field,
                spec.value_schema or "(internal)",
                on_broker,
            )
        out.print(table)


def _delete_inputs(prefix: str, redis_project: str | None) -> None:
    if not prefix:
        msg = "--prefix: refusing an empty prefix: it would match every topic on the broker"
        raise InputError(msg)
    try:
        validate_prefix(prefix)
    except TopicError as exc:
        msg = f"--prefix: {exc}"
        raise InputError(msg) from exc
    if redis_project is not None and not _FEAST_PROJECT.fullmatch(redis_project):
        msg = f"--redis-project: {redis_project!r} is not a Feast project name (letters, digits, underscores)"
        raise InputError(msg)


@topics_app.command("delete")
def topics_delete(
    prefix: Annotated[
        str,
        typer.Option(
            help="Delete every topic and consumer group whose name starts with this (not empty; Kafka's internal "
            "__ topics never), e.g. verify-1a2b3c4d."
        ),
    ],
    redis_project: Annotated[
        str | None,
        typer.Option(help="Also delete the Redis keys of this Feast project (exact match), e.g. verify_1a2b3c4d."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a terminal).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was deleted as JSON.")] = False,
) -> None:
    """Delete a throwaway namespace (a `features verify --keep` run, a benchmark's): the topics and the consumer
    groups whose names start with a prefix, and optionally a Feast project's Redis keys.

    Lists what it will delete first, then asks; with no terminal to ask on, it refuses unless --yes."""
    from slipstream.features.online_store import project_key_count

    with friendly_errors():
        _delete_inputs(prefix, redis_project)
        app = build()
        admin = app.topic_admin()
        topics, groups = admin.matching(prefix), admin.groups(prefix)
        keys = project_key_count(app.redis_url, redis_project) if redis_project else 0
        for kind, name in [("topic", t) for t in topics] + [("consumer group", g) for g in groups]:
            console.print(f"  [red]delete[/red] {kind} {name}", highlight=False)
        what = f"{len(topics)} topics and {len(groups)} consumer groups under {prefix!r}"
        if redis_project:
            what += f", {keys:,} Redis keys of Feast project {redis_project!r}"
        console.print(f"{what} (Kafka at {app.bootstrap_servers})", highlight=False, soft_wrap=True)
        if (topics or groups or keys) and not yes:
            if not sys.stdin.isatty():
                msg = f"refusing to delete {what} without confirmation: no terminal to ask on; pass --yes"
                raise InputError(msg)
            if not typer.confirm("Delete them?", default=False, err=True):
                console.print("nothing deleted")
                raise typer.Exit(1)
        admin.delete(topics, wait=True)  # the listed ones: a topic created since was not shown, so it stays
        # A static member (SLIPSTREAM_WORKER_ID) stays in its group until its session times out: wait that long at most.
        patience = app.engine_settings().session_timeout_ms / 1000 + 5
        deleted_groups = admin.delete_groups(groups, patience_s=patience)
        removed = project_key_count(app.redis_url, redis_project, delete=True) if redis_project else 0
        if as_json:
            report = {
                "prefix": prefix,
                "topics": topics,
                "consumer_groups": deleted_groups,
                "redis_project": redis_project,
                "redis_keys": removed,
            }
            out.print_json(json.dumps(report))
            return
        console.print(
            f"[green]✓[/green] deleted {len(topics)} topics, {len(deleted_groups)} consumer groups"
            + (f" and {removed:,} Redis keys" if redis_project else ""),
            highlight=False,
        )


def _print_changes(changes: list[TopicChange]) -> None:
    for change in changes:
        colour = {"created": "green", "updated": "yellow"}.get(change.action, "dim")
        console.print(f"[{colour}]{change.action:>9}[/{colour}] {change.topic} {change.detail}")
