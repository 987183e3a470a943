"""The pure parts of the image builds: the inputs hash, the Dockerfiles, the command lines, label reading."""

from __future__ import annotations

import stat
from pathlib import Path

from slipstream.infra import images
from slipstream.infra.config import PlatformConfig


def _fake_docker(tmp_path: Path, script: str) -> str:
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\n" + script)
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    return str(docker)


def test_the_inputs_hash_frames_names_and_bytes() -> None:
    assert images.inputs_hash([("a", b"bc")]) != images.inputs_hash([("ab", b"c")])
    assert images.inputs_hash([("a", b"b"), ("c", b"")]) != images.inputs_hash([("a", b"bc")])
    assert images.inputs_hash([("x", b"1")]) == images.inputs_hash([("x", b"1")])
    assert len(images.inputs_hash([])) == 64


def test_the_kafka_hash_changes_with_any_jar_byte_the_entrypoint_or_the_base() -> None:
    dockerfile, jars = images.kafka_dockerfile(), [("kafka_2.13-4.3.1.jar", b"PK\x03\x04")]
    reference = images.kafka_hash(dockerfile, b"#!/bin/sh", jars, "base1")
    assert reference == images.kafka_hash(dockerfile, b"#!/bin/sh", list(jars), "base1")
    assert reference != images.kafka_hash(dockerfile, b"#!/bin/sh", [("kafka_2.13-4.3.1.jar", b"PK\x03\x05")], "b1")
    assert reference != images.kafka_hash(dockerfile, b"#!/bin/sh ", jars, "base1")
    assert reference != images.kafka_hash(dockerfile, b"#!/bin/sh", jars, "base2")
    assert images.redis_hash(images.redis_dockerfile(), "base1") != images.redis_hash(images.redis_dockerfile(), "b2")


def test_the_dockerfiles_build_on_the_local_base_with_debian_packages() -> None:
    kafka = images.kafka_dockerfile()
    assert kafka.startswith(f"FROM {images.BASE_IMAGE}\n")
    assert "apt-get install -y -q --no-install-recommends openjdk-17-jre-headless" in kafka
    assert "COPY libs/ /opt/kafka/libs/" in kafka
    assert f"COPY {images.ENTRYPOINT} /opt/kafka/entrypoint.sh" in kafka
    redis = images.redis_dockerfile()
    assert "redis-server" in redis and '"--bind", "127.0.0.1"' in redis
    assert images.local_kafka_image("4.3.1") == "slipstream/kafka:4.3.1"


def test_command_lines() -> None:
    context, tarball = Path("/ctx"), Path("/c/base.tar")
    assert images.build_command("docker", "slipstream/redis:7", context, "abc") == [
        "docker", "build", "--network", "host", "--label", "org.slipstream.inputs=abc", "--tag", "slipstream/redis:7",
        "/ctx",
    ]  # fmt: skip
    assert "--no-cache" in images.build_command("docker", "x", context, "abc", no_cache=True)
    assert images.import_command("docker", tarball, images.BASE_IMAGE, "abc") == [
        "docker", "import", "--change", "LABEL org.slipstream.inputs=abc", "/c/base.tar", images.BASE_IMAGE,
    ]  # fmt: skip
    assert images.debootstrap_command("/usr/sbin/debootstrap", Path("/r")) == [
        "/usr/sbin/debootstrap", "--variant=minbase", "bookworm", "/r", "http://deb.debian.org/debian",
    ]  # fmt: skip
    assert images.base_hash() == images.base_hash() != images.base_hash(suite="trixie")


def test_the_entrypoint_ships_as_package_data() -> None:
    assert images.entrypoint_bytes().startswith(b"#!/bin/sh\n")


def test_image_label_tells_absent_unlabelled_and_labelled(tmp_path: Path) -> None:
    labelled = _fake_docker(tmp_path, """echo '{"org.slipstream.inputs":"abc","x":"y"}'\n""")
    assert images.image_label(labelled, "slipstream/redis:7") == "abc"
    (tmp_path / "docker").unlink()
    assert images.image_label(_fake_docker(tmp_path, "echo null\n"), "redis:7-alpine") == ""
    (tmp_path / "docker").unlink()
    absent = _fake_docker(tmp_path, "echo 'Error: No such image: x' >&2\nexit 1\n")
    assert images.image_label(absent, "x") is None


def test_a_cached_image_is_not_rebuilt(tmp_path: Path) -> None:
    """The label matches the inputs: no build, no debootstrap, only inspections."""
    calls = tmp_path / "calls"
    label = images.redis_hash(images.redis_dockerfile(), images.base_hash())
    script = f"""echo "$@" >> {calls}
case "$*" in
  *Labels*) echo '{{"org.slipstream.inputs":"{label}"}}' ;;
  *Size*) echo 1234 ;;
  *) exit 9 ;;
esac
"""
    docker = _fake_docker(tmp_path, script)
    built = images.Images(PlatformConfig(cache_dir=tmp_path / "cache"), docker).local_redis()
    assert (built.name, built.source, built.built, built.size_bytes) == (images.LOCAL_REDIS_IMAGE, "local", False, 1234)
    assert "build" not in calls.read_text()


def test_an_image_that_cannot_be_pulled_falls_back_to_the_local_one(tmp_path: Path) -> None:
    label = images.redis_hash(images.redis_dockerfile(), images.base_hash())
    script = f"""case "$*" in
  *"inspect --format {{{{json .Config.Labels}}}} redis:7-alpine"*) exit 1 ;;
  pull*) echo 'Error response from daemon: no such host' >&2; exit 1 ;;
  *Labels*) echo '{{"org.slipstream.inputs":"{label}"}}' ;;
  *Size*) echo 99 ;;
esac
"""
    messages: list[str] = []
    docker = _fake_docker(tmp_path, script)
    image = images.Images(PlatformConfig(cache_dir=tmp_path), docker, messages.append).redis()
    assert (image.name, image.source) == (images.LOCAL_REDIS_IMAGE, "local")
    assert any("redis:7-alpine cannot be had (Error response from daemon: no such host)" in m for m in messages)
