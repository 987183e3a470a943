"""The Kafka broker's classpath, resolved once from Maven Central into the cache.

``<cache_dir>/kafka-<version>/libs`` is filled by ``mvn dependency:copy-dependencies`` over the bundled
``pom.xml``; a ``.complete`` marker written afterwards makes every later call a no-op.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from slipstream.infra import _proc
from slipstream.infra.config import PlatformConfig
from slipstream.infra.exceptions import DependencyMissingError

MAVEN_HINT = "install Maven, e.g. `apt-get install -y maven` (Debian/Ubuntu) or `brew install maven` (macOS)"
MVN_TIMEOUT_S = 1800.0
MARKER = ".complete"

_KAFKA_JAR_RE = re.compile(r"^kafka_2\.13-(?P<version>\d+\.\d+\.\d+)\.jar$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CENTRAL_HINT = (
    "check that every Kafka artifact of that version is on Maven Central "
    "(https://repo.maven.apache.org/maven2/org/apache/kafka/kafka-tools/) and that the network allows it"
)


def kafka_version_from_libs(libs: Path) -> str | None:
    """The version in the name of ``kafka_2.13-X.Y.Z.jar`` in ``libs``, if there is exactly one."""
    versions = {m["version"] for p in libs.glob("kafka_2.13-*.jar") if (m := _KAFKA_JAR_RE.match(p.name))}
    return versions.pop() if len(versions) == 1 else None


def mvn_command(mvn: str, pom: Path, version: str, output_dir: Path) -> list[str]:
    """The Maven invocation that copies Kafka ``version`` and its runtime dependencies to ``output_dir``."""
    return [
        mvn,
        "-q",
        "-B",
        "-U",  # re-check artifacts that an earlier, failed attempt recorded as missing
        "-Dstyle.color=never",
        "-f",
        str(pom),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output_dir}",
    ]


def _tail_lines(text: str, lines: int = 30) -> str:
    plain = (line.rstrip() for line in _ANSI_RE.sub("", text).splitlines())
    return "\n".join([line for line in plain if line][-lines:])


def ensure_jars(config: PlatformConfig, progress: Callable[[str], None] = lambda _msg: None) -> Path:
    """Return the ``libs`` directory of ``config.kafka_version``, resolving it first if needed."""
    home = config.kafka_cache_dir.expanduser().resolve()
    libs = home / "libs"
    if (home / MARKER).is_file() and kafka_version_from_libs(libs) == config.kafka_version:
        return libs
    with _proc.file_lock(home.with_name(home.name + ".lock")):
        # Another process may have finished the same resolution while we waited for the lock.
        if (home / MARKER).is_file() and kafka_version_from_libs(libs) == config.kafka_version:
            return libs
        mvn = _proc.which("mvn", "/usr/bin", "/usr/local/bin", "/opt/homebrew/bin")
        if mvn is None:
            msg = f"`mvn` is needed once to fetch the Kafka {config.kafka_version} jars; {MAVEN_HINT}"
            raise DependencyMissingError(msg)
        home.mkdir(parents=True, exist_ok=True)
        pom = home / "pom.xml"
        pom.write_bytes(resources.files("slipstream.infra").joinpath("pom.xml").read_bytes())
        partial = home / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        cmd = mvn_command(mvn, pom, config.kafka_version, partial)
        progress(f"resolving Kafka {config.kafka_version} jars from Maven Central into {libs} ...")
        result = _proc.run(cmd, timeout=MVN_TIMEOUT_S, cwd=home)
        if result.returncode != 0 or kafka_version_from_libs(partial) != config.kafka_version:
            # Maven reports its errors on stdout; show both.
            output = _tail_lines(result.stdout + "\n" + result.stderr)
            msg = (
                f"resolving Kafka {config.kafka_version} failed (exit {result.returncode}): "
                f"{' '.join(cmd)}\n{output or '(no output)'}\n{CENTRAL_HINT}"
            )
            raise DependencyMissingError(msg)
        shutil.rmtree(libs, ignore_errors=True)
        partial.replace(libs)
        jars = sorted(p.name for p in libs.glob("*.jar"))
        (home / MARKER).write_text("\n".join(jars) + "\n")
    return libs
