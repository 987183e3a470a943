"""A local Redis Cluster of three masters, run from the system's ``redis-server`` and ``redis-cli``, without Docker.

Each master is ``redis-server --cluster-enabled yes`` on ``127.0.0.1`` (ports ``redis_cluster_port`` + 0, 1, 2; the
cluster bus on each port + 10000), its state in ``<state_dir>/redis-cluster/<port>``: ``redis.pid``, ``redis.log``,
``redis.out`` and ``nodes.conf`` (the node's id and its view of the cluster). The first ``up`` joins the empty
masters with ``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`` (16,384 slots in three ranges);
``up`` returns once every master reports ``cluster_state:ok``. Nothing is persisted (``--save "" --appendonly no``):
like the single Redis this is a cache of online features, rebuilt from Kafka.

``down`` stops every master and removes the ``nodes.conf`` files, so the next ``up`` creates a fresh cluster;
:meth:`LocalRedisCluster.stop_node` / :meth:`LocalRedisCluster.start_node` stop and start one master keeping its
``nodes.conf``, so it rejoins with its slots (a chaos drill: :attr:`LocalRedisCluster.ports` names the masters). A
restarted master comes back empty: what the engine writes next fills it again. Only processes in our pid files are
ever stopped.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from slipstream.infra import _proc, probes
from slipstream.infra.base import ServiceStatus
from slipstream.infra.config import REDIS_HOST, PlatformConfig
from slipstream.infra.exceptions import DependencyMissingError, InfraError, ServiceDiedError, ServiceTimeoutError
from slipstream.infra.ports import check_ports_free
from slipstream.infra.redis_local import INSTALL_HINT, SEARCH_DIRS, STOP_GRACE_S, find_redis_server

POLL_S = 0.05
CREATE_TIMEOUT_S = 60.0
BUS_OFFSET = 10000  # Redis's default: the cluster bus listens on the client port + 10000


def _quiet(_message: str) -> None:
    return None


def find_redis_cli() -> str:
    """Path of ``redis-cli`` (Debian's redis-server package brings it), or :class:`DependencyMissingError`."""
    found = _proc.which("redis-cli", *SEARCH_DIRS)
    if found is None:
        msg = f"`redis-cli` not found on PATH or in {', '.join(SEARCH_DIRS)}; {INSTALL_HINT}"
        raise DependencyMissingError(msg)
    return found


def node_command(redis_server: str, port: int, home: Path) -> list[str]:
    """One foreground, non-persistent cluster master bound to the loopback interface."""
    return [
        redis_server,
        "--port",
        str(port),
        "--bind",
        REDIS_HOST,
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        str(home / "nodes.conf"),
        "--cluster-node-timeout",
        "5000",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(home),
        "--logfile",
        str(home / "redis.log"),
        "--pidfile",
        str(home / "redis.pid"),
        "--daemonize",
        "no",
    ]


class LocalRedisCluster:
    """Starts, stops and inspects the local Redis Cluster of a :class:`PlatformConfig` (``redis_cluster=True``)."""

    name = "redis"
    backend = "local"

    def __init__(self, config: PlatformConfig, progress: Callable[[str], None] = _quiet) -> None:
        self.config = config
        self._progress = progress
        self.home = config.redis_cluster_state_dir.expanduser().resolve()
        self.ports: tuple[int, ...] = config.redis_cluster_ports
        self._lock = self.home / ".lock"

    # ------------------------------------------------------------------ the cluster
    def up(self) -> ServiceStatus:
        """Start the masters that are not running, create the cluster if it is new; return once it is ``ok``."""
        with _proc.file_lock(self._lock):
            pids = {port: self._start(port) for port in self.ports}
            deadline = time.monotonic() + self.config.startup_timeout_s
            for port, pid in pids.items():
                self._wait_answers(port, pid, deadline)
            if self._slots_assigned() == 0:
                self._create()
            self._wait_ok(deadline)
        return self.status()

    def down(self) -> None:
        """Stop every master we started and forget the cluster (``nodes.conf``). A no-op if none runs."""
        with _proc.file_lock(self._lock):
            for port in self.ports:
                self._stop(port)
                (self.node_dir(port) / "nodes.conf").unlink(missing_ok=True)

    def wipe(self) -> None:
        """:meth:`down`, then delete the cluster's state directory."""
        self.down()
        shutil.rmtree(self.home, ignore_errors=True)

    def status(self) -> ServiceStatus:
        pids = [self.running_pid(port) for port in self.ports]
        url = self.config.redis_url
        if not any(pids):
            return ServiceStatus(self.name, False, url, None, self.backend, None, "not running")
        infos = [probes.redis_cluster_info(REDIS_HOST, port, timeout_s=1.0) for port in self.ports]
        states = [info.get("cluster_state") if info else None for info in infos]
        up = all(pid is not None for pid in pids) and all(state == "ok" for state in states)
        version = probes.redis_version(REDIS_HOST, self.ports[0], timeout_s=1.0)
        detail = (
            "" if up else "masters: " + ", ".join(f"{p} {s or 'down'}" for p, s in zip(self.ports, states, strict=True))
        )
        return ServiceStatus(self.name, up, url, version, self.backend, pids[0], detail)

    def running_pid(self, port: int | None = None) -> int | None:
        """Pid of master ``port`` (default: the first one running) if it runs (no network request)."""
        if port is None:
            return next((pid for p in self.ports if (pid := self.running_pid(p)) is not None), None)
        return _proc.owned_pid(self.node_dir(port) / "redis.pid", marker=f"{REDIS_HOST}:{port}")

    def node_dir(self, port: int) -> Path:
        return self.home / str(port)

    # ------------------------------------------------------------------ one master (chaos drills)
    def stop_node(self, port: int) -> None:
        """Stop master ``port`` (SIGTERM, then wait until it exited), keeping its ``nodes.conf``."""
        self._check_port(port)
        with _proc.file_lock(self._lock):
            self._stop(port)

    def start_node(self, port: int) -> ServiceStatus:
        """Start master ``port`` again; return once every master reports ``cluster_state:ok`` (it rejoined)."""
        self._check_port(port)
        with _proc.file_lock(self._lock):
            pid = self._start(port)
            deadline = time.monotonic() + self.config.startup_timeout_s
            self._wait_answers(port, pid, deadline)
            self._wait_ok(deadline)
        return self.status()

    # ------------------------------------------------------------------ internals
    def _check_port(self, port: int) -> None:
        if port not in self.ports:
            msg = f"port {port!r} is not a master of this Redis Cluster; its masters are {list(self.ports)}"
            raise InfraError(msg)

    def _start(self, port: int) -> int:
        pid = self.running_pid(port)
        if pid is not None:
            return pid
        redis_server = find_redis_server()
        check_ports_free(REDIS_HOST, {"redis cluster port": port, "its cluster bus port": port + BUS_OFFSET})
        home = self.node_dir(port)
        home.mkdir(parents=True, exist_ok=True)
        self._progress(f"starting Redis Cluster master on {REDIS_HOST}:{port} ...")
        pid = _proc.spawn_detached(node_command(redis_server, port, home), out=home / "redis.out", cwd=home)
        _proc.write_pidfile(home / "redis.pid", pid)
        return pid

    def _stop(self, port: int) -> None:
        pid = self.running_pid(port)
        if pid is not None:
            self._progress(f"stopping Redis Cluster master {port} (pid {pid}) ...")
            _proc.terminate(pid, grace_s=STOP_GRACE_S)
        (self.node_dir(port) / "redis.pid").unlink(missing_ok=True)

    def _wait_answers(self, port: int, pid: int, deadline: float) -> None:
        while probes.redis_version(REDIS_HOST, port, timeout_s=1.0) is None:
            if not _proc.pid_alive(pid):
                msg = f"Redis Cluster master {port} (pid {pid}) exited during start-up; last lines:\n{self._tail(port)}"
                raise ServiceDiedError(msg)
            if time.monotonic() > deadline:
                msg = f"Redis Cluster master {port} (pid {pid}) did not answer PING; last lines:\n{self._tail(port)}"
                raise ServiceTimeoutError(msg)
            time.sleep(POLL_S)

    def _slots_assigned(self) -> int:
        """The most slots any master knows to be assigned (0: a new cluster, to be created)."""
        infos = [probes.redis_cluster_info(REDIS_HOST, port, timeout_s=1.0) for port in self.ports]
        return max(int(info.get("cluster_slots_assigned", 0)) if info else 0 for info in infos)

    def _create(self) -> None:
        nodes = [f"{REDIS_HOST}:{port}" for port in self.ports]
        self._progress(f"creating the Redis Cluster of {', '.join(nodes)} ...")
        cmd = [find_redis_cli(), "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"]
        result = _proc.run(cmd, timeout=CREATE_TIMEOUT_S)
        if result.returncode != 0 or "[OK]" not in result.stdout:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            msg = (
                f"{' '.join(cmd)!r} failed (exit {result.returncode}); if the masters hold an old cluster, "
                f"`slipstream infra down --wipe` starts afresh:\n{output}"
            )
            raise InfraError(msg)

    def _wait_ok(self, deadline: float) -> None:
        while True:
            infos = [probes.redis_cluster_info(REDIS_HOST, port, timeout_s=1.0) for port in self.ports]
            if all(
                info
                and info.get("cluster_state") == "ok"
                and int(info.get("cluster_known_nodes", 0)) == len(self.ports)
                and int(info.get("cluster_slots_ok", 0)) == 16384
                for info in infos
            ):
                return
            if time.monotonic() > deadline:
                states = {
                    port: info.get("cluster_state") if info else None
                    for port, info in zip(self.ports, infos, strict=True)
                }
                msg = (
                    f"the Redis Cluster on ports {list(self.ports)} did not report cluster_state:ok within "
                    f"{self.config.startup_timeout_s:g} s (states {states}); last lines:\n{self._tail(self.ports[0])}"
                )
                raise ServiceTimeoutError(msg)
            time.sleep(POLL_S * 4)

    def _tail(self, port: int) -> str:
        home = self.node_dir(port)
        return "\n".join([f"--- {home / 'redis.log'}", _proc.tail(home / "redis.log", 30)])
