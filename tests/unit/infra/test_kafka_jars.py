"""Jar resolution: the Maven command, the completion marker, and a useful error when Maven fails."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from slipstream.infra import _proc, kafka_jars
from slipstream.infra.config import PlatformConfig
from slipstream.infra.exceptions import DependencyMissingError, InfraError


def test_mvn_command() -> None:
    cmd = kafka_jars.mvn_command("/usr/bin/mvn", Path("/c/pom.xml"), "4.2.0", Path("/c/libs"))
    assert cmd[0] == "/usr/bin/mvn"
    assert {"-q", "-B"} <= set(cmd)
    assert cmd[cmd.index("-f") + 1] == "/c/pom.xml"
    assert "-Dkafka.version=4.2.0" in cmd
    assert "dependency:copy-dependencies" in cmd
    assert "-DoutputDirectory=/c/libs" in cmd


def test_version_from_libs(tmp_path: Path) -> None:
    assert kafka_jars.kafka_version_from_libs(tmp_path) is None
    (tmp_path / "kafka-clients-4.3.1.jar").touch()
    (tmp_path / "kafka_2.13-4.3.1.jar").touch()
    assert kafka_jars.kafka_version_from_libs(tmp_path) == "4.3.1"
    (tmp_path / "kafka_2.13-4.2.0.jar").touch()
    assert kafka_jars.kafka_version_from_libs(tmp_path) is None  # ambiguous


def test_marker_makes_it_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = PlatformConfig(cache_dir=tmp_path)
    libs = config.kafka_cache_dir / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.3.1.jar").touch()
    (config.kafka_cache_dir / kafka_jars.MARKER).touch()

    def no_maven(*_args: object, **_kwargs: object) -> None:
        msg = "maven must not run"
        raise AssertionError(msg)

    monkeypatch.setattr(_proc, "run", no_maven)
    assert kafka_jars.ensure_jars(config) == libs.resolve()


def _fake_mvn(tmp_path: Path, script: str) -> str:
    mvn = tmp_path / "bin" / "mvn"
    mvn.parent.mkdir()
    mvn.write_text("#!/bin/sh\n" + script)
    mvn.chmod(mvn.stat().st_mode | stat.S_IXUSR)
    return str(mvn)


def test_maven_failure_shows_command_and_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mvn = _fake_mvn(tmp_path, "echo '[ERROR] Could not resolve org.apache.kafka:kafka_2.13:jar:4.9.9'\nexit 1\n")
    monkeypatch.setattr(_proc, "which", lambda name, *_dirs: mvn if name == "mvn" else None)
    config = PlatformConfig(cache_dir=tmp_path / "cache", kafka_version="4.9.9")
    with pytest.raises(DependencyMissingError) as caught:
        kafka_jars.ensure_jars(config)
    message = str(caught.value)
    assert isinstance(caught.value, InfraError)
    assert "-Dkafka.version=4.9.9" in message
    assert "Could not resolve org.apache.kafka:kafka_2.13:jar:4.9.9" in message
    assert not (config.kafka_cache_dir / kafka_jars.MARKER).exists()


def test_success_writes_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake Maven that "copies" two jars into -DoutputDirectory=...
    script = 'for a; do case "$a" in -DoutputDirectory=*) d="${a#-DoutputDirectory=}";; esac; done\n'
    script += 'mkdir -p "$d" && touch "$d/kafka_2.13-4.3.1.jar" "$d/kafka-clients-4.3.1.jar"\n'
    mvn = _fake_mvn(tmp_path, script)
    monkeypatch.setattr(_proc, "which", lambda name, *_dirs: mvn if name == "mvn" else None)
    messages: list[str] = []
    config = PlatformConfig(cache_dir=tmp_path / "cache")
    libs = kafka_jars.ensure_jars(config, messages.append)
    assert sorted(p.name for p in libs.iterdir()) == ["kafka-clients-4.3.1.jar", "kafka_2.13-4.3.1.jar"]
    assert (config.kafka_cache_dir / kafka_jars.MARKER).read_text().split() == sorted(p.name for p in libs.iterdir())
    assert (config.kafka_cache_dir / "pom.xml").is_file()
    assert messages == [f"resolving Kafka 4.3.1 jars from Maven Central into {libs} ..."]


def test_missing_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_proc, "which", lambda *_args: None)
    with pytest.raises(DependencyMissingError, match="apt-get install -y maven"):
        kafka_jars.ensure_jars(PlatformConfig(cache_dir=tmp_path))


def test_bundled_pom_declares_kafka_and_log4j() -> None:
    pom = (Path(kafka_jars.__file__).parent / "pom.xml").read_text()
    for artifact in ("kafka_2.13", "kafka-tools", "log4j-slf4j-impl", "log4j-core"):
        assert f"<artifactId>{artifact}</artifactId>" in pom
    assert "<kafka.version>4.3.1</kafka.version>" in pom
    assert "<packaging>pom</packaging>" in pom
