"""A local KRaft cluster of ``brokers`` Kafka nodes (each broker and controller), from the single node's jars.

State lives in ``<state_dir>/kafka``: ``cluster.json`` (cluster id, voters and Kafka version, written when the nodes
are formatted) and one directory per node, ``node-<id>/``, holding its ``server.properties``, ``kafka.pid``,
``kafka.out``, ``logs/server.log`` and ``data/`` (its log dir). Node n listens on ``kafka_port + 2*(n-1)`` and
``controller_port + 2*(n-1)`` on 127.0.0.1 (:attr:`PlatformConfig.kafka_nodes`); every node is a voter of the
static controller quorum, so the cluster keeps its quorum, and with ``min.insync.replicas`` 2 keeps taking
``acks=all`` writes, while one node is down. Only a process whose pid is in a node's ``kafka.pid`` *and* whose
command line names that node's ``server.properties`` is ever stopped.

For chaos drills, one node at a time: :meth:`LocalKafkaCluster.stop_broker` (SIGTERM, wait for the JVM to exit),
:meth:`LocalKafkaCluster.start_broker` (launch it again, wait until the cluster's metadata lists it and, by
default, until it is back in the ISR of every partition it replicates) and :meth:`LocalKafkaCluster.restart_broker`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from slipstream.infra import _proc, kafka_props, probes
from slipstream.infra.base import ServiceStatus
from slipstream.infra.config import KafkaNodeAddress, PlatformConfig
from slipstream.infra.exceptions import InfraError, PortInUseError, ServiceDiedError, ServiceTimeoutError
from slipstream.infra.java import find_java
from slipstream.infra.kafka_jars import ensure_jars, kafka_version_from_libs
from slipstream.infra.ports import describe_port_owner, port_is_free

STOP_GRACE_S = 30.0
NO_QUORUM_GRACE_S = 5.0
FORMAT_TIMEOUT_S = 120.0
POLL_S = 0.25
NODE_DIR_PREFIX = "node-"


def _quiet(_message: str) -> None:
    return None


class KafkaNode:
    """The files and the process of one node; knows nothing of the others."""

    def __init__(self, kafka_home: Path, address: KafkaNodeAddress) -> None:
        self.address = address
        self.node_id = address.node_id
        self.home = kafka_home / f"{NODE_DIR_PREFIX}{address.node_id}"
        self.props_file = self.home / "server.properties"
        self.pidfile = self.home / "kafka.pid"
        self.out_file = self.home / "kafka.out"
        self.logs_dir = self.home / "logs"
        self.data_dir = self.home / "data"

    def running_pid(self) -> int | None:
        """Pid of this node's JVM if we started it and it still runs (no network request)."""
        return _proc.owned_pid(self.pidfile, marker=str(self.props_file))

    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").is_file()

    def log_tail(self) -> str:
        log = self.logs_dir / "server.log"
        parts = [f"--- {log}", _proc.tail(log, 30), f"--- {self.out_file}", _proc.tail(self.out_file, 15)]
        return "\n".join(parts)


def node_dirs(kafka_home: Path) -> dict[int, Path]:
    """Node id -> directory of every ``node-<id>`` under ``kafka_home`` (whatever ``brokers`` made them)."""
    found: dict[int, Path] = {}
    if kafka_home.is_dir():
        for path in kafka_home.iterdir():
            suffix = path.name.removeprefix(NODE_DIR_PREFIX)
            if path.name.startswith(NODE_DIR_PREFIX) and suffix.isdigit() and path.is_dir():
                found[int(suffix)] = path
    return dict(sorted(found.items()))


def running_nodes(kafka_home: Path) -> dict[int, int]:
    """Node id -> pid of every cluster node running from ``kafka_home`` (pid files only, no network request)."""
    running: dict[int, int] = {}
    for node_id, path in node_dirs(kafka_home).items():
        pid = _proc.owned_pid(path / "kafka.pid", marker=str(path / "server.properties"))
        if pid is not None:
            running[node_id] = pid
    return running


def stop_nodes(kafka_home: Path, progress: Callable[[str], None] = _quiet) -> None:
    """SIGTERM every cluster node running from ``kafka_home`` at once and wait for them to exit; SIGKILL what is left
    after 30 s, or 5 s after fewer than a majority of the nodes still run: the last node's shutdown can wait for a
    quorum that has gone (seen: 30 s). Killing it loses nothing acknowledged (its writes are in the page cache, and
    on two other nodes); its next start recovers the log."""
    running = running_nodes(kafka_home)
    if not running:
        return
    progress(f"stopping Kafka nodes {', '.join(f'{n} (pid {p})' for n, p in running.items())} ...")
    majority = len(node_dirs(kafka_home)) // 2 + 1
    for pid in running.values():
        _proc.signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while alive := [pid for pid in running.values() if _proc.pid_alive(pid)]:
        if len(alive) < majority:
            deadline = min(deadline, time.monotonic() + NO_QUORUM_GRACE_S)
        if time.monotonic() > deadline:
            for pid in alive:
                _proc.terminate(pid, grace_s=0)  # SIGTERM again, then SIGKILL and wait
            break
        time.sleep(0.1)
    for node_id in running:
        (kafka_home / f"{NODE_DIR_PREFIX}{node_id}" / "kafka.pid").unlink(missing_ok=True)


def wipe_nodes(kafka_home: Path, progress: Callable[[str], None] = _quiet) -> None:
    """Stop every cluster node under ``kafka_home``, then delete the node directories and the cluster record."""
    stop_nodes(kafka_home, progress)
    for path in node_dirs(kafka_home).values():
        shutil.rmtree(path, ignore_errors=True)
    (kafka_home / "cluster.json").unlink(missing_ok=True)


class LocalKafkaCluster:
    """Starts, stops and inspects the ``config.brokers``-node local cluster; one node at a time for drills."""

    name = "kafka"
    backend = "local"

    def __init__(
        self, config: PlatformConfig, progress: Callable[[str], None] = _quiet, java_home: str | None = None
    ) -> None:
        if config.brokers < 3:
            msg = f"brokers {config.brokers} is a single node: LocalKafka runs it, not LocalKafkaCluster"
            raise InfraError(msg)
        self.config = config
        self._progress = progress
        self._java_home = java_home
        self.home = config.kafka_state_dir.expanduser().resolve()
        self.nodes = {address.node_id: KafkaNode(self.home, address) for address in config.kafka_nodes}
        self._record = self.home / "cluster.json"
        self._lock = self.home / ".cluster.lock"

    # -- the whole cluster -------------------------------------------------------------------------

    def up(self) -> ServiceStatus:
        """Start every node that is not running and return once the metadata lists all of them."""
        self.start()
        return self.wait_ready()

    def start(self) -> dict[int, int]:
        """Format the nodes' storage once, launch the JVMs of the nodes not running; node id -> pid, no waiting."""
        with _proc.file_lock(self._lock):
            running = {n: pid for n, node in self.nodes.items() if (pid := node.running_pid()) is not None}
            missing = [node for n, node in self.nodes.items() if n not in running]
            if not missing:
                return running
            java, _java_version = find_java(self._java_home or os.environ.get("JAVA_HOME"))
            self._check_ports(missing)
            libs = ensure_jars(self.config, self._progress)
            for node in self.nodes.values():
                self._write_config(node)
            self._format_if_needed(java, libs)
            self._progress(
                f"starting Kafka {self.config.kafka_version}, {self.config.brokers} nodes on "
                f"{self.config.bootstrap_servers} ..."
            )
            for node in missing:
                running[node.node_id] = self._spawn(node, java, libs)
            return dict(sorted(running.items()))

    def wait_ready(self, node_ids: Iterable[int] | None = None, timeout_s: float | None = None) -> ServiceStatus:
        """Poll with metadata requests until every node of ``node_ids`` (default: all) is a live broker of the
        cluster; fail fast if one of their JVMs exits."""
        wanted = sorted(self.nodes if node_ids is None else node_ids)
        timeout = self.config.startup_timeout_s if timeout_s is None else timeout_s
        self._progress(f"waiting for brokers {', '.join(map(str, wanted))} ...")
        deadline = time.monotonic() + timeout
        while True:
            for node_id in wanted:
                node = self.nodes[node_id]
                if node.running_pid() is None:
                    msg = f"Kafka node {node_id} exited during start-up; last lines:\n{node.log_tail()}"
                    raise ServiceDiedError(msg)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = (
                    f"Kafka nodes {wanted} were not all live brokers on {self.config.bootstrap_servers} within "
                    f"{timeout:g} s; last lines of node {wanted[-1]}:\n{self.nodes[wanted[-1]].log_tail()}"
                )
                raise ServiceTimeoutError(msg)
            metadata = probes.kafka_metadata(self.config.bootstrap_servers, timeout_s=min(5.0, remaining))
            if metadata is not None and set(wanted) <= set(metadata.broker_ids):
                return self._overall(metadata)
            time.sleep(POLL_S)

    def down(self) -> None:
        """Stop every node (SIGTERM to all at once, SIGKILL after 30 s). A no-op for nodes not running."""
        with _proc.file_lock(self._lock):
            stop_nodes(self.home, self._progress)

    def wipe(self) -> None:
        """Stop the nodes and delete every node directory and the cluster record: the next ``up()`` formats anew."""
        with _proc.file_lock(self._lock):
            wipe_nodes(self.home, self._progress)

    def status(self) -> ServiceStatus:
        """The cluster as one service: up when every node runs and is a live broker."""
        running = {n for n, node in self.nodes.items() if node.running_pid() is not None}
        if not running:
            return self._status(up=False, detail="not running")
        metadata = probes.kafka_metadata(self.config.bootstrap_servers, timeout_s=2.0)
        if metadata is None:
            return self._status(up=False, detail="nodes running but none answers a metadata request")
        return self._overall(metadata)

    def node_statuses(self) -> dict[int, ServiceStatus]:
        """Node id -> that node's status: its pid and whether the cluster's metadata lists it as a live broker."""
        pids = {n: node.running_pid() for n, node in self.nodes.items()}
        metadata = probes.kafka_metadata(self.config.bootstrap_servers, timeout_s=2.0) if any(pids.values()) else None
        statuses: dict[int, ServiceStatus] = {}
        for node_id, node in self.nodes.items():
            pid = pids[node_id]
            live = metadata is not None and node_id in metadata.broker_ids
            if pid is None:
                detail = "not running"
            elif live:
                detail = "live broker (and controller-quorum voter)"
            else:
                detail = "process running but not a live broker (starting, fenced, or no quorum)"
            statuses[node_id] = ServiceStatus(
                name=f"kafka-{node_id}",
                up=pid is not None and live,
                address=f"{self.config.kafka_host}:{node.address.kafka_port}",
                version=self._version(pid),
                backend=self.backend,
                pid=pid,
                detail=detail,
            )
        return statuses

    # -- one node at a time (chaos drills) ---------------------------------------------------------

    def stop_broker(self, node_id: int) -> None:
        """Stop node ``node_id``: SIGTERM (a controlled shutdown: its partitions' leadership moves to the others),
        wait until the JVM has exited (SIGKILL after 30 s). Raises :class:`InfraError` if it is not running.

        With 3 nodes the cluster keeps its controller quorum and, at ``min.insync.replicas`` 2, its writes; a second
        node stopped loses both until one is started again.
        """
        node = self._node(node_id)
        with _proc.file_lock(self._lock):
            pid = node.running_pid()
            if pid is None:
                msg = f"Kafka node {node_id} is not running (no live pid in {node.pidfile})"
                raise InfraError(msg)
            self._progress(f"stopping Kafka node {node_id} (pid {pid}) ...")
            _proc.terminate(pid, grace_s=STOP_GRACE_S)
            node.pidfile.unlink(missing_ok=True)

    def start_broker(self, node_id: int, *, in_sync: bool = True, timeout_s: float | None = None) -> ServiceStatus:
        """Start node ``node_id`` again (its data and config as they were) and return the cluster's status once the
        metadata lists it as a live broker, and with ``in_sync`` once it is back in the ISR of every partition it
        replicates (so the next node may be stopped without dropping below ``min.insync.replicas``).

        ``timeout_s`` defaults to ``startup_timeout_s``. Raises :class:`InfraError` if the node already runs.
        """
        node = self._node(node_id)
        timeout = self.config.startup_timeout_s if timeout_s is None else timeout_s
        with _proc.file_lock(self._lock):
            if (pid := node.running_pid()) is not None:
                msg = f"Kafka node {node_id} is already running (pid {pid})"
                raise InfraError(msg)
            if not node.formatted() or not node.props_file.is_file():
                msg = f"Kafka node {node_id} was never started (no storage in {node.data_dir}); start the cluster"
                raise InfraError(msg)
            java, _java_version = find_java(self._java_home or os.environ.get("JAVA_HOME"))
            self._check_ports([node])
            self._spawn(node, java, ensure_jars(self.config, self._progress))
        begin = time.monotonic()
        status = self.wait_ready([node_id], timeout_s=timeout)
        if in_sync:
            self._wait_in_sync(node_id, deadline=begin + timeout)
        return status

    def restart_broker(self, node_id: int, *, in_sync: bool = True, timeout_s: float | None = None) -> ServiceStatus:
        """:meth:`stop_broker` then :meth:`start_broker`."""
        self.stop_broker(node_id)
        return self.start_broker(node_id, in_sync=in_sync, timeout_s=timeout_s)

    # -- internals ---------------------------------------------------------------------------------

    def _node(self, node_id: int) -> KafkaNode:
        if node_id not in self.nodes:
            msg = f"node_id {node_id!r} is not a node of this cluster ({', '.join(map(str, self.nodes))})"
            raise InfraError(msg)
        return self.nodes[node_id]

    def _wait_in_sync(self, node_id: int, deadline: float) -> None:
        self._progress(f"waiting for node {node_id} to rejoin every ISR ...")
        while True:
            remaining = deadline - time.monotonic()
            lagging = probes.kafka_partitions_out_of_sync(
                self.config.bootstrap_servers, node_id, timeout_s=max(0.5, min(5.0, remaining))
            )
            if lagging == 0:
                return
            if remaining <= 0:
                msg = f"Kafka node {node_id} is live but still out of the ISR of {lagging} partitions (None: no answer)"
                raise ServiceTimeoutError(msg)
            time.sleep(POLL_S)

    def _check_ports(self, nodes: Iterable[KafkaNode]) -> None:
        host = self.config.kafka_host
        for node in nodes:
            offset = 2 * (node.node_id - 1)
            for kind, port in (
                ("kafka_port", node.address.kafka_port),
                ("controller_port", node.address.controller_port),
            ):
                if port_is_free(host, port):
                    continue
                owner = describe_port_owner(port)
                held_by = f"held by {owner}" if owner else "held by a process this user cannot see"
                derived = f"{kind}+{offset}" if offset else kind
                msg = (
                    f"port {port} (node {node.node_id}'s {kind}, {derived}) on {host} is already in use, {held_by}; "
                    f"stop it or choose another {kind} (node n uses {kind}+2*(n-1))"
                )
                raise PortInUseError(msg)

    def _write_config(self, node: KafkaNode) -> None:
        node.home.mkdir(parents=True, exist_ok=True)
        props = kafka_props.cluster_server_properties(self.config, node.address, node.data_dir)
        node.props_file.write_text(kafka_props.render_properties(props))

    def _voters(self) -> str:
        return kafka_props.cluster_server_properties(self.config, self.nodes[1].address, Path())[
            "controller.quorum.voters"
        ]

    def _format_if_needed(self, java: str, libs: Path) -> None:
        formatted = [n for n, node in self.nodes.items() if node.formatted()]
        hint = f"run `slipstream infra down --wipe` (deletes {self.home}) or go back to the old setting"
        if formatted:
            if len(formatted) < len(self.nodes):
                missing = sorted(set(self.nodes) - set(formatted))
                msg = f"Kafka nodes {formatted} of {self.home} are formatted but {missing} are not; {hint}"
                raise InfraError(msg)
            self._check_record(hint)
            return
        cluster_id = kafka_props.new_cluster_id()
        self._progress(f"formatting storage of {len(self.nodes)} nodes in {self.home} (cluster {cluster_id}) ...")
        commands = {
            n: kafka_props.format_command(java, libs, node.props_file, cluster_id, standalone=False)
            for n, node in self.nodes.items()
        }
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            futures = {
                n: pool.submit(_proc.run, cmd, timeout=FORMAT_TIMEOUT_S, cwd=self.home) for n, cmd in commands.items()
            }
            results = {n: future.result() for n, future in futures.items()}
        for node_id, result in results.items():
            if result.returncode != 0:
                output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
                command = " ".join(commands[node_id])
                msg = f"formatting node {node_id} failed (exit {result.returncode}): {command}\n{output}"
                raise InfraError(msg)
        record = {"cluster_id": cluster_id, "voters": self._voters(), "kafka_version": self.config.kafka_version}
        self._record.write_text(json.dumps(record, indent=2) + "\n")

    def _check_record(self, hint: str) -> None:
        """Formatted storage remembers its voters (node ids and controller ports); refuse a different quorum."""
        try:
            record = json.loads(self._record.read_text())
        except (OSError, ValueError):
            return  # formatted by hand: let Kafka judge
        if record.get("voters") != self._voters():
            msg = f"{self.home} was formatted for voters {record.get('voters')!r}, not {self._voters()!r}; {hint}"
            raise InfraError(msg)

    def _spawn(self, node: KafkaNode, java: str, libs: Path) -> int:
        log4j = node.home / "log4j2.properties"
        log4j.write_bytes(resources.files("slipstream.infra").joinpath("log4j2.properties").read_bytes())
        cmd = kafka_props.broker_command(
            java, libs, node.props_file, heap=self.config.kafka_heap, log4j_config=log4j, logs_dir=node.logs_dir
        )
        pid = _proc.spawn_detached(cmd, out=node.out_file, cwd=node.home)
        _proc.write_pidfile(node.pidfile, pid)
        return pid

    def _version(self, pid: int | None) -> str | None:
        if pid is not None:
            cmdline = _proc.process_cmdline(pid)
            if cmdline is not None and (version := kafka_props.version_from_cmdline(cmdline)) is not None:
                return version
        return kafka_version_from_libs(self.config.kafka_cache_dir.expanduser() / "libs")

    def _overall(self, metadata: probes.KafkaMetadata) -> ServiceStatus:
        live = [n for n in self.nodes if n in metadata.broker_ids]
        detail = (
            f"cluster {metadata.cluster_id}, {len(live)} of {len(self.nodes)} brokers live "
            f"({', '.join(map(str, live)) or 'none'})"
        )
        return self._status(up=len(live) == len(self.nodes), detail=detail)

    def _status(self, *, up: bool, detail: str) -> ServiceStatus:
        pid = next((p for node in self.nodes.values() if (p := node.running_pid()) is not None), None)
        return ServiceStatus(
            name=self.name,
            up=up,
            address=self.config.bootstrap_servers,
            version=self._version(pid),
            backend=self.backend,
            pid=None,
            detail=detail,
        )
