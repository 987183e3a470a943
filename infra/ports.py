"""Is a TCP port free, and if not, which process holds it.

The owner is looked up with ``ss -ltnp`` and, where ``ss`` is missing, ``/proc/net/tcp{,6}`` plus the
socket links in ``/proc/*/fd``. The parsers are pure functions so they are tested on captured text.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Mapping
from pathlib import Path

from slipstream.infra import _proc
from slipstream.infra.exceptions import PortInUseError

_SS_USER_RE = re.compile(r'\("(?P<name>[^"]*)",pid=(?P<pid>\d+),fd=\d+\)')
_TCP_LISTEN = "0A"


def port_is_free(host: str, port: int) -> bool:
    """True if a listening socket could be bound to ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the services themselves: a port left in TIME_WAIT is free, a listening one is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports the kernel had free on ``host`` just now (all held open while choosing).

    Another process may take one before it is used: callers bind soon after, and a failed bind is an error.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
    return ports


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def parse_ss_listeners(text: str, port: int) -> list[tuple[str, int]]:
    """``(program, pid)`` pairs listening on ``port`` in the output of ``ss -ltnp``."""
    owners: list[tuple[str, int]] = []
    for line in text.splitlines():
        fields = line.split()
        # State Recv-Q Send-Q Local:Port Peer:Port [Process]; with -H there is no header line.
        if len(fields) < 5 or fields[0] != "LISTEN":
            continue
        local = fields[3]
        if not local.rsplit(":", 1)[-1] == str(port):
            continue
        for match in _SS_USER_RE.finditer(line):
            owner = (match["name"], int(match["pid"]))
            if owner not in owners:
                owners.append(owner)
    return owners


def parse_proc_net_tcp(text: str, port: int) -> list[int]:
    """Socket inodes listening on ``port`` in ``/proc/net/tcp`` or ``/proc/net/tcp6`` text."""
    inodes: list[int] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _TCP_LISTEN:
            continue
        try:
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            inode = int(fields[9])
        except (IndexError, ValueError):
            continue
        if local_port == port and inode not in inodes:
            inodes.append(inode)
    return inodes


def _owners_from_ss(port: int) -> list[tuple[str, int]]:
    ss = _proc.which("ss", "/usr/bin", "/usr/sbin", "/sbin", "/bin")
    if ss is None:
        return []
    result = _proc.run([ss, "-H", "-ltnp", f"sport = :{port}"], timeout=5)
    return parse_ss_listeners(result.stdout, port) if result.returncode == 0 else []


def _owners_from_proc(port: int, proc_root: Path = Path("/proc")) -> list[tuple[str, int]]:
    inodes: set[int] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            inodes.update(parse_proc_net_tcp((proc_root / "net" / table).read_text(), port))
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    owners: list[tuple[str, int]] = []
    for pid_dir in proc_root.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            links = {str(fd.readlink()) for fd in (pid_dir / "fd").iterdir()}
            name = (pid_dir / "comm").read_text().strip()
        except OSError:
            continue  # gone, or not ours to read
        if links & wanted:
            owners.append((name, int(pid_dir.name)))
    return owners


def describe_port_owner(port: int) -> str | None:
    """``"java (pid 4242)"`` for the process listening on ``port``, or None if it cannot be told."""
    owners = _owners_from_ss(port) or _owners_from_proc(port)
    if not owners:
        return None
    return ", ".join(f"{name} (pid {pid})" for name, pid in owners)


def check_ports_free(host: str, ports: Mapping[str, int]) -> None:
    """Raise :class:`PortInUseError` for the first of ``{"kafka_port": 9092, ...}`` that is taken."""
    for name, port in ports.items():
        if port_is_free(host, port):
            continue
        owner = describe_port_owner(port)
        held_by = f"held by {owner}" if owner else "held by a process this user cannot see"
        msg = f"port {port} ({name}) on {host} is already in use, {held_by}; stop it or choose another {name}"
        raise PortInUseError(msg)
