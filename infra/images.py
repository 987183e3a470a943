"""Container images for Kafka and Redis: the configured (official) ones when they can be had, else built here.

``PlatformConfig.kafka_image`` (default ``apache/kafka:<version>``) and ``redis_image`` (``redis:7-alpine``) are
used when present in the engine or pullable. Where no image registry is reachable, three local images are built
instead, with nothing but Debian packages and the Kafka jars already resolved from Maven Central:

- ``slipstream/debian-base:bookworm``: ``debootstrap --variant=minbase`` (its rootfs tarball cached under
  ``<cache_dir>/images/``), imported with ``docker import``;
- ``slipstream/kafka:<version>``: that base + ``openjdk-17-jre-headless`` + the jars of ``<cache_dir>/kafka-<version>``
  + ``kafka-entrypoint.sh`` (formats KRaft storage, starts one broker + controller);
- ``slipstream/redis:7``: that base + Debian's ``redis-server``.

Each carries the label ``org.slipstream.inputs``: a sha256 of everything it is built from (the Dockerfile, the
entrypoint, every jar's bytes, the base's own hash). A build is skipped when the image exists with the same label,
so a second call costs two ``docker image inspect`` calls and the hashing of the jars (~0.1 s).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from slipstream.infra import _proc, apt
from slipstream.infra.config import PlatformConfig
from slipstream.infra.exceptions import DependencyMissingError, InfraError
from slipstream.infra.kafka_jars import ensure_jars

BASE_IMAGE = "slipstream/debian-base:bookworm"
LOCAL_REDIS_IMAGE = "slipstream/redis:7"
LABEL = "org.slipstream.inputs"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
ENTRYPOINT = "kafka-entrypoint.sh"
DEBOOTSTRAP_TIMEOUT_S = 900.0
BUILD_TIMEOUT_S = 1800.0
PULL_TIMEOUT_S = 600.0
INSPECT_TIMEOUT_S = 30.0
REMOVE_TIMEOUT_S = 180.0
DEBOOTSTRAP_HINT = "install it with `apt-get install debootstrap` (as root), or make the official images available"

Source = Literal["configured", "local"]

_APT = (
    "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {packages}"
    " && apt-get clean && rm -rf /var/lib/apt/lists/*"
)


def _quiet(_message: str) -> None:
    return None


def local_kafka_image(version: str) -> str:
    return f"slipstream/kafka:{version}"


@dataclass(frozen=True, slots=True)
class Image:
    """One image ready in the engine: its name, whether it is the configured one or built here, what it cost.

    ``built`` is True when this call built it (``seconds`` is then the build's wall time); ``size_bytes`` is what
    ``docker image inspect`` reports; ``build_seconds`` is the last recorded build time of a local image.
    """

    name: str
    source: Source
    built: bool
    seconds: float
    size_bytes: int | None
    build_seconds: float | None = None


# -- pure pieces --------------------------------------------------------------------------------------------


def inputs_hash(parts: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over named byte strings, each name and length framed so no two different inputs collide."""
    digest = hashlib.sha256()
    for name, data in parts:
        encoded = name.encode()
        digest.update(len(encoded).to_bytes(8, "big") + encoded + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def debootstrap_command(debootstrap: str, rootfs: Path, *, suite: str = SUITE, mirror: str = MIRROR) -> list[str]:
    return [debootstrap, "--variant=minbase", suite, str(rootfs), mirror]


def base_hash(suite: str = SUITE, mirror: str = MIRROR) -> str:
    """What the base image is made from: the debootstrap invocation (its packages are whatever the suite holds)."""
    return inputs_hash(
        [("debootstrap", " ".join(debootstrap_command("debootstrap", Path("/"), suite=suite, mirror=mirror)).encode())]
    )


def kafka_dockerfile(base: str = BASE_IMAGE) -> str:
    return "\n".join(
        [
            f"FROM {base}",
            f"RUN {_APT.format(packages='openjdk-17-jre-headless')}",
            "COPY libs/ /opt/kafka/libs/",
            f"COPY {ENTRYPOINT} /opt/kafka/entrypoint.sh",
            'ENTRYPOINT ["/bin/sh", "/opt/kafka/entrypoint.sh"]',
            "",
        ]
    )


def redis_dockerfile(base: str = BASE_IMAGE) -> str:
    return "\n".join(
        [
            f"FROM {base}",
            f"RUN {_APT.format(packages='redis-server')}",
            'CMD ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]',
            "",
        ]
    )


def kafka_hash(dockerfile: str, entrypoint: bytes, jars: Iterable[tuple[str, bytes]], base: str) -> str:
    return inputs_hash([("Dockerfile", dockerfile.encode()), (ENTRYPOINT, entrypoint), ("base", base.encode()), *jars])


def redis_hash(dockerfile: str, base: str) -> str:
    return inputs_hash([("Dockerfile", dockerfile.encode()), ("base", base.encode())])


def build_command(docker: str, name: str, context: Path, label: str, *, no_cache: bool = False) -> list[str]:
    """``docker build`` on the host network (apt inside reaches the mirrors as the host does), labelled.

    ``no_cache`` (a ``--rebuild``) runs every step again; otherwise a changed jar reuses the cached JRE layer.
    """
    cache = ["--no-cache"] if no_cache else []
    return [docker, "build", "--network", "host", *cache, "--label", f"{LABEL}={label}", "--tag", name, str(context)]


def import_command(docker: str, tarball: Path, name: str, label: str) -> list[str]:
    return [docker, "import", "--change", f"LABEL {LABEL}={label}", str(tarball), name]


def entrypoint_bytes() -> bytes:
    return resources.files("slipstream.infra").joinpath(ENTRYPOINT).read_bytes()


# -- the engine ---------------------------------------------------------------------------------------------


def image_label(docker: str, name: str) -> str | None:
    """The ``org.slipstream.inputs`` label of a local image: "" when it has none, None when the image is absent."""
    result = _proc.run(
        [docker, "image", "inspect", "--format", "{{json .Config.Labels}}", name], timeout=INSPECT_TIMEOUT_S
    )
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout.strip() or "null") or {}
    return str(labels.get(LABEL, ""))


def image_id(docker: str, name: str) -> str | None:
    result = _proc.run([docker, "image", "inspect", "--format", "{{.Id}}", name], timeout=INSPECT_TIMEOUT_S)
    text = result.stdout.strip()
    return text if result.returncode == 0 and text else None


def image_size(docker: str, name: str) -> int | None:
    result = _proc.run([docker, "image", "inspect", "--format", "{{.Size}}", name], timeout=INSPECT_TIMEOUT_S)
    text = result.stdout.strip()
    return int(text) if result.returncode == 0 and text.isdigit() else None


def try_pull(docker: str, name: str) -> str | None:
    """Pull ``name``; None on success, else the engine's one-line reason."""
    result = _proc.run([docker, "pull", "--quiet", name], timeout=PULL_TIMEOUT_S)
    if result.returncode == 0:
        return None
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


class Images:
    """Makes the Kafka and Redis images of a :class:`PlatformConfig` available in the engine behind ``docker``."""

    def __init__(self, config: PlatformConfig, docker: str, progress: Callable[[str], None] = _quiet) -> None:
        self.config = config
        self.docker = docker
        self._progress = progress
        self.home = config.cache_dir.expanduser().resolve() / "images"
        self._locked = False

    # -- what the throwaway platform calls ----------------------------------------------------------------

    def kafka(self) -> Image:
        """The configured Kafka image if present or pullable, else ``slipstream/kafka:<version>`` (built if needed)."""
        configured = self._configured(self.config.kafka_image_ref)
        return configured if configured is not None else self.local_kafka()

    def redis(self) -> Image:
        configured = self._configured(self.config.redis_image)
        return configured if configured is not None else self.local_redis()

    # -- the local images -----------------------------------------------------------------------------------

    def local_images(self, *, rebuild: bool = False) -> list[Image]:
        """Build (or find, cached) the base, Kafka and Redis images; ``rebuild`` builds all three again."""
        return [self.base(rebuild=rebuild), self.local_kafka(rebuild=rebuild), self.local_redis(rebuild=rebuild)]

    def base(self, *, rebuild: bool = False) -> Image:
        label = base_hash()
        with self._lock():
            if not rebuild and image_label(self.docker, BASE_IMAGE) == label:
                return self._cached(BASE_IMAGE)
            return self._build_base(label, rebuild=rebuild)

    def _build_base(self, label: str, *, rebuild: bool) -> Image:
        old, begin = image_id(self.docker, BASE_IMAGE), time.monotonic()
        tarball = self._rootfs_tarball(label, rebuild=rebuild)
        self._progress(f"importing {tarball.name} as {BASE_IMAGE} ...")
        self._run(import_command(self.docker, tarball, BASE_IMAGE, label), BUILD_TIMEOUT_S)
        return self._record(BASE_IMAGE, time.monotonic() - begin, old)

    def local_kafka(self, *, rebuild: bool = False) -> Image:
        name = local_kafka_image(self.config.kafka_version)
        libs = ensure_jars(self.config, self._progress)
        dockerfile, entrypoint = kafka_dockerfile(), entrypoint_bytes()
        jar_paths = sorted(libs.glob("*.jar"))
        label = kafka_hash(dockerfile, entrypoint, ((p.name, p.read_bytes()) for p in jar_paths), base_hash())
        with self._lock():
            if not rebuild and image_label(self.docker, name) == label:
                return self._cached(name)
            self.base()
            return self._build_kafka(name, label, dockerfile, entrypoint, jar_paths, no_cache=rebuild)

    def _build_kafka(
        self, name: str, label: str, dockerfile: str, entrypoint: bytes, jar_paths: list[Path], *, no_cache: bool
    ) -> Image:
        old, begin = image_id(self.docker, name), time.monotonic()
        libs = jar_paths[0].parent if jar_paths else Path()
        context = self._fresh_context(f"kafka-{self.config.kafka_version}")
        (context / "Dockerfile").write_text(dockerfile)
        (context / ENTRYPOINT).write_bytes(entrypoint)
        (context / "libs").mkdir()
        for jar in jar_paths:
            shutil.copy2(jar, context / "libs" / jar.name)
        self._progress(f"building {name} (JRE 17 from Debian + {len(jar_paths)} jars from {libs}) ...")
        self._run(build_command(self.docker, name, context, label, no_cache=no_cache), BUILD_TIMEOUT_S)
        shutil.rmtree(context, ignore_errors=True)
        return self._record(name, time.monotonic() - begin, old)

    def local_redis(self, *, rebuild: bool = False) -> Image:
        dockerfile = redis_dockerfile()
        label = redis_hash(dockerfile, base_hash())
        with self._lock():
            if not rebuild and image_label(self.docker, LOCAL_REDIS_IMAGE) == label:
                return self._cached(LOCAL_REDIS_IMAGE)
            self.base()
            return self._build_redis(dockerfile, label, no_cache=rebuild)

    def _build_redis(self, dockerfile: str, label: str, *, no_cache: bool) -> Image:
        old, begin = image_id(self.docker, LOCAL_REDIS_IMAGE), time.monotonic()
        context = self._fresh_context("redis")
        (context / "Dockerfile").write_text(dockerfile)
        self._progress(f"building {LOCAL_REDIS_IMAGE} (Debian's redis-server) ...")
        cmd = build_command(self.docker, LOCAL_REDIS_IMAGE, context, label, no_cache=no_cache)
        self._run(cmd, BUILD_TIMEOUT_S)
        shutil.rmtree(context, ignore_errors=True)
        return self._record(LOCAL_REDIS_IMAGE, time.monotonic() - begin, old)

    # -- internals ------------------------------------------------------------------------------------------

    def _configured(self, name: str) -> Image | None:
        if image_label(self.docker, name) is not None:
            return Image(name, "configured", built=False, seconds=0.0, size_bytes=image_size(self.docker, name))
        self._progress(f"pulling {name} ...")
        begin = time.monotonic()
        reason = try_pull(self.docker, name)
        if reason is not None:
            self._progress(f"{name} cannot be had ({reason}); using a locally built image instead")
            return None
        size = image_size(self.docker, name)
        return Image(name, "configured", built=True, seconds=time.monotonic() - begin, size_bytes=size)

    def _rootfs_tarball(self, label: str, *, rebuild: bool) -> Path:
        tarball = self.home / f"debian-{SUITE}-minbase-{label[:12]}.tar"
        if tarball.is_file() and not rebuild:
            return tarball
        debootstrap = _proc.which("debootstrap", "/usr/sbin", "/sbin")
        if debootstrap is None and apt.can_install():
            apt.apt_install(["debootstrap", "debian-archive-keyring"], self._progress, hint=DEBOOTSTRAP_HINT)
            debootstrap = _proc.which("debootstrap", "/usr/sbin", "/sbin")
        if debootstrap is None:
            msg = f"`debootstrap` is needed to build {BASE_IMAGE} (no image registry answered); {DEBOOTSTRAP_HINT}"
            raise DependencyMissingError(msg)
        rootfs = self.home / "rootfs.partial"
        shutil.rmtree(rootfs, ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        self._progress(f"debootstrap --variant=minbase {SUITE} from {MIRROR} (once; cached in {self.home}) ...")
        self._run(debootstrap_command(debootstrap, rootfs), DEBOOTSTRAP_TIMEOUT_S)
        partial = tarball.with_suffix(".partial")
        tar = _proc.which("tar", "/bin", "/usr/bin") or "tar"
        self._run([tar, "-C", str(rootfs), "-cf", str(partial), "."], DEBOOTSTRAP_TIMEOUT_S)
        partial.replace(tarball)
        shutil.rmtree(rootfs, ignore_errors=True)
        return tarball

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One builder per machine (a file lock), re-entrant within this object (flock is not, per open file)."""
        if self._locked:
            yield
            return
        with _proc.file_lock(self.home / ".lock"):
            self._locked = True
            try:
                yield
            finally:
                self._locked = False

    def _fresh_context(self, name: str) -> Path:
        context = self.home / f"context-{name}"
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir(parents=True)
        return context

    def _run(self, cmd: list[str], timeout: float) -> None:
        result = _proc.run(cmd, timeout=timeout)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            msg = f"{' '.join(cmd)!r} failed (exit {result.returncode}):\n{output}"
            raise InfraError(msg)

    def _builds_file(self) -> Path:
        return self.home / "builds.json"

    def _builds(self) -> dict[str, float]:
        try:
            data = json.loads(self._builds_file().read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _record(self, name: str, seconds: float, old_id: str | None) -> Image:
        """Note the build time; remove the image this one replaced (kept if a container still uses it, or if the
        engine does not finish removing it in time)."""
        if old_id is not None and old_id != image_id(self.docker, name):
            # Best effort: the new image is built either way (removing a GB-sized one took over 30 s under load).
            with contextlib.suppress(InfraError):
                _proc.run([self.docker, "image", "rm", old_id], timeout=REMOVE_TIMEOUT_S)
        builds = {**self._builds(), name: round(seconds, 1)}
        self.home.mkdir(parents=True, exist_ok=True)
        self._builds_file().write_text(json.dumps(builds, indent=2, sort_keys=True) + "\n")
        self._progress(f"built {name} in {seconds:.1f} s")
        size = image_size(self.docker, name)
        return Image(name, "local", built=True, seconds=seconds, size_bytes=size, build_seconds=seconds)

    def _cached(self, name: str) -> Image:
        size = image_size(self.docker, name)
        return Image(name, "local", built=False, seconds=0.0, size_bytes=size, build_seconds=self._builds().get(name))
