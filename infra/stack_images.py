"""The compose stack's own images, built like the Kafka and Redis ones of :mod:`slipstream.infra.images`.

- ``slipstream/slipstream:local``: the ``Dockerfile`` at the checkout's root (multi-stage; Debian's Python 3.11, the
  locked dependencies installed by uv, a non-root user; ``slipstream`` is the entrypoint, so the one image runs every
  command). Its context is assembled under ``<cache_dir>/images/`` from :data:`APP_CONTEXT` as the checkout holds it
  (the ``slipstream/<part>`` symlinks kept, their targets beside them; no ``__pycache__``), exactly what
  ``.dockerignore`` lets ``docker build .`` send.
- ``slipstream/prometheus:bookworm``: the Debian base + Debian's ``prometheus``, run as its ``prometheus`` user.

Both carry the ``org.slipstream.inputs`` label (a sha256 of the Dockerfile, every context file and the base's own
hash) and are skipped when it matches. A changed source reuses Docker's layer cache for everything up to the
dependencies (keyed by ``pyproject.toml`` and ``requirements.lock``); that cache lives in the engine
(``/var/lib/docker``), outside any clone, so a fresh clone on the same machine builds in seconds.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from slipstream.infra.exceptions import DependencyMissingError
from slipstream.infra.images import (
    _APT,
    BASE_IMAGE,
    BUILD_TIMEOUT_S,
    Image,
    Images,
    base_hash,
    build_command,
    image_id,
    image_label,
    inputs_hash,
)

APP_IMAGE = "slipstream/slipstream:local"
PROMETHEUS_IMAGE = "slipstream/prometheus:bookworm"
DOCKERFILE = "Dockerfile"
# What the image is built from, relative to the checkout; .dockerignore allows exactly these.
APP_CONTEXT = (
    "pyproject.toml",
    "requirements.lock",
    "README.md",
    "slipstream",
    "features",
    "infra",
    "models",
    "monitoring",
    "schemas",
    "serving",
    "streams",
)
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")  # Debian's place for locally trusted CAs
_SKIPPED_DIRS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = (".pyc",)


@dataclass(frozen=True, slots=True)
class ContextEntry:
    """One file or symlink of the build context: its path in the context, its bytes or the link's target."""

    path: str
    data: bytes
    link: bool = False


def default_checkout() -> Path:
    """The source checkout this module lives in (``infra/`` is a top-level folder of it)."""
    return Path(__file__).resolve().parents[1]


def local_ca_certs(directory: Path = LOCAL_CA_DIR) -> str:
    """The PEM text of the host's locally trusted CAs (``*.crt``, sorted), "" when none: the build stage trusts them.

    Where a TLS-inspecting proxy stands between the machine and PyPI, its CA is one of them; without it pip and uv
    inside the build fail with ``CERTIFICATE_VERIFY_FAILED``. They are passed as a build argument of the build stage
    only, and are no part of the inputs hash.
    """
    if not directory.is_dir():
        return ""
    return "\n".join(path.read_text().strip() for path in sorted(directory.rglob("*.crt")) if path.is_file())


def app_build_command(docker: str, context: Path, label: str, ca_certs: str, *, no_cache: bool) -> list[str]:
    """:func:`images.build_command` for Slipstream's image, with ``BUILD_CA_CERTS`` when there are any; a failed
    step's container is removed too (``--force-rm``), not left behind."""
    cmd = build_command(docker, APP_IMAGE, context, label, no_cache=no_cache)
    extra = ["--build-arg", f"BUILD_CA_CERTS={ca_certs}"] if ca_certs else []
    return [*cmd[:-1], "--force-rm", *extra, cmd[-1]]


def prometheus_dockerfile(base: str = BASE_IMAGE) -> str:
    return "\n".join(
        [
            f"FROM {base}",
            f"RUN {_APT.format(packages='prometheus')} && install -d -o prometheus -g prometheus /prometheus",
            "USER prometheus",
            "WORKDIR /prometheus",
            'ENTRYPOINT ["/usr/bin/prometheus"]',
            'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]',
            "",
        ]
    )


def _walk(root: Path, relative: str) -> Iterator[ContextEntry]:
    path = root / relative
    if path.is_symlink():
        yield ContextEntry(relative, os.readlink(path).encode(), link=True)
    elif path.is_file():
        if not path.name.endswith(_SKIPPED_SUFFIXES):
            yield ContextEntry(relative, path.read_bytes())
    elif path.is_dir() and path.name not in _SKIPPED_DIRS:
        for child in sorted(path.iterdir()):
            yield from _walk(root, f"{relative}/{child.name}")


def context_entries(checkout: Path) -> list[ContextEntry]:
    """The files and symlinks of :data:`APP_CONTEXT` under ``checkout``, sorted; a missing one is an error."""
    if not (checkout / DOCKERFILE).is_file():
        msg = f"Slipstream's image builds from a source checkout: no {DOCKERFILE} in {checkout}"
        raise DependencyMissingError(msg)
    missing = [name for name in APP_CONTEXT if not (checkout / name).exists()]
    if missing:
        msg = f"{checkout} lacks {', '.join(missing)}: not a Slipstream checkout to build the image from"
        raise DependencyMissingError(msg)
    entries = [entry for name in APP_CONTEXT for entry in _walk(checkout, name)]
    return sorted(entries, key=lambda entry: entry.path)


def app_hash(dockerfile: bytes, entries: list[ContextEntry], base: str) -> str:
    parts = [(DOCKERFILE, dockerfile), ("base", base.encode())]
    parts += [(("link:" if entry.link else "file:") + entry.path, entry.data) for entry in entries]
    return inputs_hash(parts)


def prometheus_hash(dockerfile: str, base: str) -> str:
    return inputs_hash([("Dockerfile", dockerfile.encode()), ("base", base.encode())])


def write_context(context: Path, dockerfile: bytes, entries: list[ContextEntry]) -> None:
    (context / DOCKERFILE).write_bytes(dockerfile)
    for entry in entries:
        target = context / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.link:
            target.symlink_to(entry.data.decode())
        else:
            target.write_bytes(entry.data)


class StackImages(Images):
    """:class:`Images` plus the two images only the compose stack runs."""

    def stack_images(self, checkout: Path | None = None, *, rebuild: bool = False) -> list[Image]:
        """Base, Kafka, Redis (cached as they are), Slipstream and Prometheus (``rebuild``: these two again)."""
        return [
            self.base(),
            self.local_kafka(),
            self.local_redis(),
            self.app(checkout, rebuild=rebuild),
            self.prometheus(rebuild=rebuild),
        ]

    def app(self, checkout: Path | None = None, *, rebuild: bool = False) -> Image:
        """``slipstream/slipstream:local`` from ``checkout`` (default: this one), built unless its label matches."""
        root = (checkout or default_checkout()).resolve()
        entries = context_entries(root)
        dockerfile = (root / DOCKERFILE).read_bytes()
        label = app_hash(dockerfile, entries, base_hash())
        with self._lock():
            if not rebuild and image_label(self.docker, APP_IMAGE) == label:
                return self._cached(APP_IMAGE)
            self.base()
            old, begin = image_id(self.docker, APP_IMAGE), time.monotonic()
            context = self._fresh_context("slipstream")
            write_context(context, dockerfile, entries)
            self._progress(f"building {APP_IMAGE} from {root} (Python deps from requirements.lock, by uv) ...")
            cmd = app_build_command(self.docker, context, label, local_ca_certs(), no_cache=rebuild)
            self._run(cmd, BUILD_TIMEOUT_S)
            shutil.rmtree(context, ignore_errors=True)
            return self._record(APP_IMAGE, time.monotonic() - begin, old)

    def prometheus(self, *, rebuild: bool = False) -> Image:
        dockerfile = prometheus_dockerfile()
        label = prometheus_hash(dockerfile, base_hash())
        with self._lock():
            if not rebuild and image_label(self.docker, PROMETHEUS_IMAGE) == label:
                return self._cached(PROMETHEUS_IMAGE)
            self.base()
            old, begin = image_id(self.docker, PROMETHEUS_IMAGE), time.monotonic()
            context = self._fresh_context("prometheus")
            (context / DOCKERFILE).write_text(dockerfile)
            self._progress(f"building {PROMETHEUS_IMAGE} (Debian's prometheus) ...")
            self._run(build_command(self.docker, PROMETHEUS_IMAGE, context, label, no_cache=rebuild), BUILD_TIMEOUT_S)
            shutil.rmtree(context, ignore_errors=True)
            return self._record(PROMETHEUS_IMAGE, time.monotonic() - begin, old)
