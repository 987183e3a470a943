"""TLS and an ACL login for the local Redis (``infra up --redis-tls``, ``SLIPSTREAM_REDIS_TLS=true``).

Everything lives in ``<state_dir>/redis/tls`` and is made once, by ``openssl`` and :mod:`secrets`, at the first
``up`` with TLS; later starts reuse it, so URLs handed out earlier stay valid:

* ``ca.crt``/``ca.key``: a private CA (EC P-256, 825 days), trusted by the clients through ``ssl_ca_certs``;
* ``server.crt``/``server.key``: Redis's certificate, signed by that CA, for ``127.0.0.1`` and ``localhost``;
* ``users.acl``: the ACL file, ``default`` off and one user, :data:`USER`, with every command and key;
* ``password``: that user's password (32 random URL-safe characters).

Keys and the password are written ``0600`` in a ``0700`` directory. Redis listens on TLS only (``--port 0``) and
on the loopback interface only. ``infra down --wipe`` deletes them with the rest of the state.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from slipstream.infra import _proc
from slipstream.infra.config import REDIS_HOST, PlatformConfig
from slipstream.infra.exceptions import DependencyMissingError, InfraError

__all__ = [
    "USER",
    "RedisTLSFiles",
    "ensure_tls_files",
    "issue_server_certificate",
    "local_tls_url",
    "tls_files",
    "tls_server_args",
]

USER = "slipstream"
OPENSSL_TIMEOUT_S = 60.0
CERT_DAYS = 825  # the longest validity macOS and browsers accept for a server certificate


@dataclass(frozen=True, slots=True)
class RedisTLSFiles:
    """Where the local Redis's TLS material and ACL login live (nothing is read or made by this object)."""

    home: Path

    @property
    def ca_cert(self) -> Path:
        return self.home / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.home / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.home / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.home / "server.key"

    @property
    def acl_file(self) -> Path:
        return self.home / "users.acl"

    @property
    def password_file(self) -> Path:
        return self.home / "password"

    def complete(self) -> bool:
        paths = (self.ca_cert, self.server_cert, self.server_key, self.acl_file, self.password_file)
        return all(path.is_file() for path in paths)


def tls_files(config: PlatformConfig) -> RedisTLSFiles:
    return RedisTLSFiles(config.redis_state_dir.expanduser().resolve() / "tls")


def tls_server_args(files: RedisTLSFiles, port: int) -> list[str]:
    """redis-server's arguments for TLS only on ``port`` (no plain-text port) and the ACL file; no client
    certificate is required (the ACL password authenticates)."""
    return [
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(files.server_cert),
        "--tls-key-file",
        str(files.server_key),
        "--tls-ca-cert-file",
        str(files.ca_cert),
        "--tls-auth-clients",
        "optional",
        "--aclfile",
        str(files.acl_file),
    ]


def _openssl(*args: str, cwd: Path) -> None:
    found = _proc.which("openssl", "/usr/bin", "/usr/local/bin", "/opt/homebrew/bin")
    if found is None:
        msg = "`openssl` not found: it makes the local Redis's certificates; install it (`apt-get install openssl`)"
        raise DependencyMissingError(msg)
    result = _proc.run([found, *args], timeout=OPENSSL_TIMEOUT_S, cwd=cwd)
    if result.returncode != 0:
        msg = f"openssl {args[0]} failed (exit {result.returncode}): {result.stderr.strip()[-400:]}"
        raise InfraError(msg)


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def issue_server_certificate(home: Path, *, ca_name: str, host: str, usage: str = "serverAuth") -> None:
    """In ``home``: a new private CA (``ca.crt``, ``ca.key``) and a server key and certificate it signs
    (``server.key``, ``server.crt``; for ``host`` and localhost, extended key usage ``usage``); keys mode 600."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    days = ("-days", str(CERT_DAYS))
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", *days, "-subj", f"/CN={ca_name}", cwd=home)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=home)
    (home / "server.ext").write_text(
        f"subjectAltName=IP:{host},DNS:localhost\nextendedKeyUsage={usage}\nkeyUsage=digitalSignature\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", *days, "-extfile", "server.ext", cwd=home,
    )  # fmt: skip
    for leftover in ("server.csr", "server.ext", "ca.srl"):
        (home / leftover).unlink(missing_ok=True)
    for key in ("ca.key", "server.key"):
        (home / key).chmod(0o600)


def ensure_tls_files(files: RedisTLSFiles) -> RedisTLSFiles:
    """Make the CA, the server certificate, the password and the ACL file unless they are all there."""
    if files.complete():
        return files
    home = files.home
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    issue_server_certificate(home, ca_name="Slipstream local CA", host=REDIS_HOST)
    password = files.password_file.read_text().strip() if files.password_file.is_file() else ""
    if not password:
        password = secrets.token_urlsafe(24)
        _write_secret(files.password_file, password + "\n")
    # ACL rule syntax: '>' adds a password; '~*' every key, '&*' every channel, '+@all' every command.
    _write_secret(files.acl_file, f"user default off\nuser {USER} on >{password} ~* &* +@all\n")
    return files


def local_tls_url(config: PlatformConfig) -> str:
    """The URL of the local TLS Redis with its login: ``rediss://slipstream:<password>@127.0.0.1:<port>/0?
    ssl_ca_certs=<ca.crt>``. Reads the password file that the first ``up`` with TLS wrote; before that, the URL has
    no password (and a client's login is refused, saying so)."""
    files = tls_files(config)
    try:
        password = files.password_file.read_text(encoding="utf-8").strip()
    except OSError:
        password = ""
    login = f"{USER}:{quote(password, safe='')}" if password else USER
    return f"rediss://{login}@{REDIS_HOST}:{config.redis_port}/0?ssl_ca_certs={quote(str(files.ca_cert), safe='/')}"
