"""Find a Java runtime new enough for Kafka 4 (17+)."""

from __future__ import annotations

import re
from pathlib import Path

from slipstream.infra import _proc
from slipstream.infra.exceptions import InfraError, JavaNotFoundError

MIN_JAVA = 17

INSTALL_HINT = (
    "install a Java 17+ runtime, e.g. `apt-get install -y openjdk-17-jre-headless` (Debian/Ubuntu) "
    "or `brew install openjdk@17` (macOS), or point JAVA_HOME at one"
)

_VERSION_RE = re.compile(r'version "(?P<major>\d+)(?:\.(?P<minor>\d+))?[^"]*"')


def parse_java_version(output: str) -> int | None:
    """Major version from ``java -version`` output (``"1.8.0_381"`` -> 8, ``"17.0.15"`` -> 17), else None."""
    match = _VERSION_RE.search(output)
    if match is None:
        return None
    major = int(match["major"])
    if major == 1 and match["minor"] is not None:
        return int(match["minor"])
    return major


def find_java(java_home: str | None = None) -> tuple[str, int]:
    """``(path, major_version)`` of ``$JAVA_HOME/bin/java`` if given, else ``java`` on PATH.

    ``java_home`` is passed in by the caller (the launcher reads ``JAVA_HOME`` when it starts a broker),
    so this function itself reads no environment.
    """
    candidates: list[str] = []
    if java_home:
        home_java = Path(java_home) / "bin" / "java"
        if home_java.is_file():
            candidates.append(str(home_java))
    on_path = _proc.which("java", "/usr/bin")
    if on_path is not None:
        candidates.append(on_path)
    if not candidates:
        msg = f"no `java` found on PATH or in JAVA_HOME ({java_home!r}); {INSTALL_HINT}"
        raise JavaNotFoundError(msg)
    seen: list[str] = []
    for java in candidates:
        try:
            result = _proc.run([java, "-version"], timeout=30)
        except InfraError:
            continue
        version = parse_java_version(result.stderr + result.stdout)
        seen.append(f"{java} -> {version if version is not None else 'unknown version'}")
        if version is not None and version >= MIN_JAVA:
            return java, version
    msg = f"Kafka 4 needs Java {MIN_JAVA}+, found: {'; '.join(seen) or 'none that runs'}; {INSTALL_HINT}"
    raise JavaNotFoundError(msg)
