"""A real Kafka 4 broker (KRaft, broker and controller in one JVM) run from jars, without Docker.

State lives in ``<state_dir>/kafka``: ``server.properties``, ``kafka.pid``, ``kafka.out`` (JVM stdout and
stderr), ``logs/server.log`` and ``data/`` (the log dir, formatted once). Only the process whose pid is in
``kafka.pid`` *and* whose command line names our ``server.properties`` is ever stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path

from slipstream.infra import _proc, kafka_props, kafka_sasl, probes
from slipstream.infra.base import ServiceStatus
from slipstream.infra.config import PlatformConfig, parse_version
from slipstream.infra.exceptions import InfraError, ServiceDiedError, ServiceTimeoutError
from slipstream.infra.java import find_java
from slipstream.infra.kafka_jars import ensure_jars, kafka_version_from_libs
from slipstream.infra.ports import check_ports_free, port_accepts

STOP_GRACE_S = 30.0
FORMAT_TIMEOUT_S = 120.0
POLL_S = 0.25


def _quiet(_message: str) -> None:
    return None


class LocalKafka:
    """Starts, stops and inspects the local broker described by a :class:`PlatformConfig`."""

    name = "kafka"
    backend = "local"

    def __init__(
        self,
        config: PlatformConfig,
        progress: Callable[[str], None] = _quiet,
        java_home: str | None = None,
    ) -> None:
        self.config = config
        self._progress = progress
        self._java_home = java_home
        home = config.kafka_state_dir.expanduser().resolve()
        self.home = home
        self.props_file = home / "server.properties"
        self.pidfile = home / "kafka.pid"
        self.out_file = home / "kafka.out"
        self.logs_dir = home / "logs"
        self.data_dir = home / "data"
        self._format_record = home / "format.json"
        self._lock = home / ".lock"

    # -- ServiceLauncher ---------------------------------------------------------------------------

    def up(self) -> ServiceStatus:
        """Start the broker unless it already runs, and return once it answers a metadata request."""
        pid = self.start()
        return self.wait_ready(pid)

    def down(self) -> None:
        """Stop the broker we started (SIGTERM, then SIGKILL after 30 s). A no-op if it is not running."""
        with _proc.file_lock(self._lock):
            pid = self.running_pid()
            if pid is not None:
                self._progress(f"stopping Kafka (pid {pid}) ...")
                _proc.terminate(pid, grace_s=STOP_GRACE_S)
            self.pidfile.unlink(missing_ok=True)

    def status(self) -> ServiceStatus:
        pid = self.running_pid()
        if pid is None:
            return self._status(up=False, pid=None, detail=self._why_down())
        metadata = probes.kafka_metadata(self.config.bootstrap_servers, 2.0, self._security())
        if metadata is None or kafka_props.NODE_ID not in metadata.broker_ids:
            return self._status(up=False, pid=pid, detail="process running but not answering metadata requests")
        return self._status(up=True, pid=pid, detail=f"cluster {metadata.cluster_id}")

    # -- the two halves of up(), so a caller can start Redis while the JVM boots ----------------------

    def start(self) -> int:
        """Launch the broker JVM if it is not running yet; return its pid without waiting for readiness."""
        with _proc.file_lock(self._lock):
            pid = self.running_pid()
            if pid is not None:
                return pid
            java, _java_version = find_java(self._java_home or os.environ.get("JAVA_HOME"))
            check_ports_free(
                self.config.kafka_host,
                {"kafka_port": self.config.kafka_port, "controller_port": self.config.controller_port},
            )
            libs = ensure_jars(self.config, self._progress)
            if self.config.kafka_sasl:
                kafka_sasl.ensure_sasl_files(kafka_sasl.sasl_files(self.config), self.config.kafka_host)
            self._write_config()
            self._format_if_needed(java, libs)
            log4j = self.home / "log4j2.properties"
            log4j.write_bytes(resources.files("slipstream.infra").joinpath("log4j2.properties").read_bytes())
            cmd = kafka_props.broker_command(
                java, libs, self.props_file, heap=self.config.kafka_heap, log4j_config=log4j, logs_dir=self.logs_dir
            )
            self._progress(f"starting Kafka {self.config.kafka_version} on {self.config.bootstrap_servers} ...")
            pid = _proc.spawn_detached(cmd, out=self.out_file, cwd=self.home)
            _proc.write_pidfile(self.pidfile, pid)
            return pid

    def wait_ready(self, pid: int) -> ServiceStatus:
        """Poll with metadata requests until broker 1 answers; fail fast if the JVM exits."""
        self._progress("waiting for broker ...")
        deadline = time.monotonic() + self.config.startup_timeout_s
        while True:
            if not _proc.pid_alive(pid):
                self.pidfile.unlink(missing_ok=True)
                msg = f"Kafka (pid {pid}) exited during start-up; last lines:\n{self._log_tail()}"
                raise ServiceDiedError(msg)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = (
                    f"Kafka (pid {pid}) did not answer a metadata request on {self.config.bootstrap_servers} "
                    f"within {self.config.startup_timeout_s:g} s; last lines:\n{self._log_tail()}"
                )
                raise ServiceTimeoutError(msg)
            if port_accepts(self.config.kafka_host, self.config.kafka_port):
                metadata = probes.kafka_metadata(self.config.bootstrap_servers, min(5.0, remaining), self._security())
                if metadata is not None and kafka_props.NODE_ID in metadata.broker_ids:
                    status = self._status(up=True, pid=pid, detail=f"cluster {metadata.cluster_id}")
                    logged = self.logged_version()
                    if logged is not None and logged != status.version:
                        status = replace(status, detail=f"{status.detail}; log says Kafka version {logged}")
                    return status
            time.sleep(POLL_S)

    def wipe(self) -> None:
        """Stop the broker and delete its data, logs and config, so the next ``up()`` formats a new cluster."""
        self.down()
        with _proc.file_lock(self._lock):
            for path in (self.data_dir, self.logs_dir, kafka_sasl.sasl_files(self.config).home):
                shutil.rmtree(path, ignore_errors=True)
            for file in (self._format_record, self.props_file, self.out_file):
                file.unlink(missing_ok=True)

    # -- internals ---------------------------------------------------------------------------------

    def running_pid(self) -> int | None:
        """Pid of the process we started, if it is still running (no network request)."""
        return _proc.owned_pid(self.pidfile, marker=str(self.props_file))

    def _security(self) -> dict[str, object]:
        return kafka_sasl.client_security(self.config)

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        props = kafka_props.server_properties(self.config, self.data_dir)
        if self.config.kafka_sasl:  # the SASL_SSL listener replaces the plain-text one
            broker = f"{self.config.kafka_host}:{self.config.kafka_port}"
            controller = f"{self.config.kafka_host}:{self.config.controller_port}"
            props.update(kafka_sasl.server_properties(kafka_sasl.sasl_files(self.config), broker, controller))
        self.props_file.write_text(kafka_props.render_properties(props))
        self.props_file.chmod(0o600)  # with SASL it holds the broker's own SCRAM password

    def _format_if_needed(self, java: str, libs: Path) -> None:
        controller = f"{self.config.kafka_host}:{self.config.controller_port}"
        if (self.data_dir / "meta.properties").is_file():
            self._check_formatted_for(controller)
            return
        cluster_id = kafka_props.new_cluster_id()
        self._progress(f"formatting storage in {self.data_dir} (cluster {cluster_id}) ...")
        cmd = kafka_props.format_command(java, libs, self.props_file, cluster_id)
        if self.config.kafka_sasl:
            cmd += kafka_sasl.scram_format_args(kafka_sasl.sasl_files(self.config))
        result = _proc.run(cmd, timeout=FORMAT_TIMEOUT_S, cwd=self.home)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
            shown = " ".join(cmd).replace(kafka_sasl.sasl_files(self.config).password() or "\0", "***")
            msg = f"formatting Kafka storage failed (exit {result.returncode}): {shown}\n{output}"
            raise InfraError(msg)
        record = {
            "cluster_id": cluster_id,
            "controller": controller,
            "kafka_version": self.config.kafka_version,
            "sasl": self.config.kafka_sasl,
        }
        self._format_record.write_text(json.dumps(record, indent=2) + "\n")

    def _check_formatted_for(self, controller: str) -> None:
        """A formatted log dir remembers its controller endpoint and metadata version; refuse a mismatch."""
        try:
            record = json.loads(self._format_record.read_text())
        except (OSError, ValueError):
            return  # formatted by hand or by an older version of this module: let Kafka judge
        hint = f"run `slipstream infra down --wipe` (deletes {self.data_dir}) or go back to the old setting"
        if record.get("controller") != controller:
            was = record.get("controller")
            msg = f"{self.data_dir} was formatted for controller {was!r}, not {controller!r}; {hint}"
            raise InfraError(msg)
        if bool(record.get("sasl", False)) != self.config.kafka_sasl:  # SCRAM users are made by the format only
            was = "with" if record.get("sasl") else "without"
            msg = f"{self.data_dir} was formatted {was} kafka_sasl; {hint}"
            raise InfraError(msg)
        formatted = str(record.get("kafka_version", "0.0.0"))
        try:
            newer = parse_version(formatted) > parse_version(self.config.kafka_version)
        except InfraError:
            newer = False
        if newer:
            wanted = self.config.kafka_version
            msg = f"{self.data_dir} was formatted by Kafka {formatted}, newer than kafka_version {wanted!r}; {hint}"
            raise InfraError(msg)

    def _running_version(self, pid: int | None) -> str | None:
        if pid is not None:
            cmdline = _proc.process_cmdline(pid)
            if cmdline is not None and (version := kafka_props.version_from_cmdline(cmdline)) is not None:
                return version
        return kafka_version_from_libs(self.config.kafka_cache_dir.expanduser() / "libs")

    def logged_version(self) -> str | None:
        """The version in the broker's last ``Kafka version: X`` log line (confirms the jar version)."""
        try:
            text = (self.logs_dir / "server.log").read_text(errors="replace")
        except OSError:
            return None
        return kafka_props.version_from_log(text)

    def _why_down(self) -> str:
        if port_accepts(self.config.kafka_host, self.config.kafka_port):
            return f"not started by this platform, but {self.config.bootstrap_servers} accepts connections"
        return "not running"

    def _log_tail(self) -> str:
        log = self.logs_dir / "server.log"
        parts = [f"--- {log}", _proc.tail(log, 30), f"--- {self.out_file}", _proc.tail(self.out_file, 15)]
        return "\n".join(parts)

    def _status(self, *, up: bool, pid: int | None, detail: str) -> ServiceStatus:
        return ServiceStatus(
            name=self.name,
            up=up,
            address=self.config.bootstrap_servers,
            version=self._running_version(pid),
            backend=self.backend,
            pid=pid,
            detail=detail,
        )
