"""Finding Java 17+: version parsing on real `java -version` outputs, and the search itself on fake javas."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from slipstream.infra import _proc
from slipstream.infra import java as java_mod
from slipstream.infra.exceptions import JavaNotFoundError


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment (build 17.0.15+6-Debian-1deb12u1)', 17),
        ('java version "1.8.0_381"\nJava(TM) SE Runtime Environment (build 1.8.0_381-b09)', 8),
        ('openjdk version "21" 2023-09-19\nOpenJDK Runtime Environment (build 21+35-2513)', 21),
        ('openjdk version "22-ea" 2024-03-19', 22),
        ('openjdk version "11.0.2" 2019-01-15', 11),
        ('Picked up JAVA_TOOL_OPTIONS: -Xss1m\nopenjdk version "25.0.1" 2025-10-21 LTS', 25),
        ("bash: java: command not found", None),
    ],
)
def test_parse_java_version(output: str, major: int | None) -> None:
    assert java_mod.parse_java_version(output) == major


def _fake_java(home: Path, version_line: str) -> Path:
    bin_dir = home / "bin"
    bin_dir.mkdir(parents=True)
    java = bin_dir / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return java


def test_java_home_is_preferred(tmp_path: Path) -> None:
    java = _fake_java(tmp_path / "jdk", 'openjdk version "21.0.2" 2024-01-16')
    assert java_mod.find_java(str(tmp_path / "jdk")) == (str(java), 21)


def test_too_old_everywhere_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_java(tmp_path / "old", 'java version "1.8.0_381"')
    monkeypatch.setattr(_proc, "which", lambda *_args: None)
    with pytest.raises(JavaNotFoundError) as caught:
        java_mod.find_java(str(tmp_path / "old"))
    message = str(caught.value)
    assert "-> 8" in message
    assert "openjdk-17-jre-headless" in message


def test_no_java_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_proc, "which", lambda *_args: None)
    with pytest.raises(JavaNotFoundError, match="no `java` found"):
        java_mod.find_java(None)
