"""Port checks: parsers over captured `ss` and /proc/net/tcp text, and the real bind test."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipstream.infra import ports
from slipstream.infra.exceptions import PortInUseError

SS_OUTPUT = """\
LISTEN 0      511             127.0.0.1:16379      0.0.0.0:*    users:(("redis-server",pid=8058,fd=6))
LISTEN 0      128               0.0.0.0:2024       0.0.0.0:*
LISTEN 0      50     [::ffff:127.0.0.1]:19093            *:*    users:(("java",pid=8056,fd=65))
LISTEN 0      50     [::ffff:127.0.0.1]:19092            *:*    users:(("java",pid=8056,fd=93))
LISTEN 0      4096                    *:8080             *:*    users:(("nginx",pid=11,fd=6),("nginx",pid=12,fd=6))
ESTAB  0      0               127.0.0.1:19092    127.0.0.1:50000 users:(("python",pid=99,fd=3))
"""

SS_WITH_HEADER = """\
State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess
LISTEN 0      511        127.0.0.1:6379      0.0.0.0:*    users:(("redis-server",pid=700,fd=6))
"""

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:3FFB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19715 1 0000 100 0 0 10 0
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1557 1 0000 100 0 0 10 0
   2: 0100007F:3FFB 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 20000 1 0000 100 0 0 10 0
"""

PROC_NET_TCP6 = (
    "  sl  local_address                         remote_address                        st tx_queue rx_queue\n"
    "   0: 0000000000000000FFFF00000100007F:4A85 00000000000000000000000000000000:0000 0A 00000000:00000000"
    " 00:00000000 00000000     0        0 4242 1 0\n"
)


def test_parse_ss_listeners() -> None:
    assert ports.parse_ss_listeners(SS_OUTPUT, 16379) == [("redis-server", 8058)]
    assert ports.parse_ss_listeners(SS_OUTPUT, 19092) == [("java", 8056)]  # not the ESTAB client
    assert ports.parse_ss_listeners(SS_OUTPUT, 8080) == [("nginx", 11), ("nginx", 12)]
    assert ports.parse_ss_listeners(SS_OUTPUT, 2024) == []  # listening, but the owner is not visible
    assert ports.parse_ss_listeners(SS_OUTPUT, 1234) == []
    assert ports.parse_ss_listeners(SS_WITH_HEADER, 6379) == [("redis-server", 700)]


def test_parse_proc_net_tcp() -> None:
    assert ports.parse_proc_net_tcp(PROC_NET_TCP, 16379) == [19715]  # LISTEN only, not the connection
    assert ports.parse_proc_net_tcp(PROC_NET_TCP, 2024) == [1557]
    assert ports.parse_proc_net_tcp(PROC_NET_TCP, 9092) == []
    assert ports.parse_proc_net_tcp(PROC_NET_TCP6, 19077) == [4242]


def test_owner_from_fake_proc(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(PROC_NET_TCP)
    process = tmp_path / "4321"
    (process / "fd").mkdir(parents=True)
    (process / "comm").write_text("redis-server\n")
    (process / "fd" / "6").symlink_to("socket:[19715]")
    (process / "fd" / "7").symlink_to("/dev/null")
    other = tmp_path / "99"
    (other / "fd").mkdir(parents=True)
    (other / "comm").write_text("bash\n")
    assert ports._owners_from_proc(16379, proc_root=tmp_path) == [("redis-server", 4321)]
    assert ports._owners_from_proc(9092, proc_root=tmp_path) == []


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_bind_check_sees_a_listener(listening: int) -> None:
    assert not ports.port_is_free("127.0.0.1", listening)
    assert ports.port_accepts("127.0.0.1", listening)


def test_free_port_is_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    assert ports.port_is_free("127.0.0.1", port)
    assert not ports.port_accepts("127.0.0.1", port)


def test_check_ports_free_names_port_and_owner(listening: int) -> None:
    with pytest.raises(PortInUseError) as caught:
        ports.check_ports_free("127.0.0.1", {"redis_port": listening})
    message = str(caught.value)
    assert f"port {listening} (redis_port)" in message
    assert "(pid " in message  # this very test process, found by ss or /proc
