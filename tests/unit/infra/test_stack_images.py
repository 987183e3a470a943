"""The compose stack's pure parts: Slipstream's image context and hash, the Dockerfiles, the compose file itself."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from slipstream.cli import app as cli
from slipstream.infra import compose, images, stack_images
from slipstream.infra.exceptions import DependencyMissingError

REPO = Path(__file__).resolve().parents[3]
SLIPSTREAM_SERVICES = ("features", "scorer", "score-stream", "shadow", "outcomes", "drift", "loop")


def _checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    for name in stack_images.APP_CONTEXT:
        if "." in name:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(name)
        elif name != "slipstream":
            (root / name).mkdir(parents=True)
            (root / name / "__init__.py").write_text(f"# {name}\n")
    (root / "slipstream").mkdir()
    (root / "slipstream" / "__init__.py").write_text("")
    (root / "slipstream" / "__pycache__").mkdir()
    (root / "slipstream" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00")
    (root / "slipstream" / "features").symlink_to("../features")
    (root / "Dockerfile").write_text("FROM scratch\n")
    return root


def _stack() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(compose.stack_file(REPO).read_text())
    return data


def test_the_context_keeps_symlinks_and_skips_bytecode(tmp_path: Path) -> None:
    entries = {entry.path: entry for entry in stack_images.context_entries(_checkout(tmp_path))}
    assert entries["slipstream/features"].link
    assert entries["slipstream/features"].data == b"../features"
    assert "features/__init__.py" in entries
    assert not [path for path in entries if "__pycache__" in path or path.endswith(".pyc")]


def test_the_hash_follows_sources_not_bytecode(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    before = stack_images.app_hash(b"FROM x", stack_images.context_entries(root), "base")
    (root / "serving" / "__pycache__").mkdir()
    (root / "serving" / "__pycache__" / "y.pyc").write_bytes(b"\x01")
    assert stack_images.app_hash(b"FROM x", stack_images.context_entries(root), "base") == before
    (root / "serving" / "__init__.py").write_text("# changed\n")
    assert stack_images.app_hash(b"FROM x", stack_images.context_entries(root), "base") != before
    assert stack_images.app_hash(b"FROM y", stack_images.context_entries(root), "base") != before


def test_the_written_context_is_the_checkout(tmp_path: Path) -> None:
    entries = stack_images.context_entries(_checkout(tmp_path))
    context = tmp_path / "context"
    context.mkdir()
    stack_images.write_context(context, b"FROM x\n", entries)
    assert (context / "Dockerfile").read_bytes() == b"FROM x\n"
    assert (context / "slipstream" / "features").is_symlink()
    assert (context / "slipstream" / "features" / "__init__.py").read_text() == "# features\n"
    assert stack_images.context_entries(context) == entries


def test_a_checkout_without_a_dockerfile_is_named(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    (root / "Dockerfile").unlink()
    with pytest.raises(DependencyMissingError, match=re.escape(f"no Dockerfile in {root}")):
        stack_images.context_entries(root)


def test_dockerignore_sends_exactly_the_context() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    allowed = tuple(line[1:] for line in lines if line.startswith("!"))
    assert lines[0] == "*"
    assert allowed == stack_images.APP_CONTEXT


def test_the_dockerfile_builds_on_the_local_base_and_runs_as_a_user() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert f"ARG BASE={images.BASE_IMAGE}" in text
    final = text.split("\nFROM ${BASE}\n", 1)[1]  # the runtime stage
    assert "USER 10001:10001" in final
    assert '"slipstream"]' in final.split("ENTRYPOINT", 1)[1].splitlines()[0]
    assert "-c requirements.lock" in text
    assert 'uv==${UV_VERSION}"' in text


def test_the_prometheus_image_is_debians_package_as_its_user() -> None:
    dockerfile = stack_images.prometheus_dockerfile("base:1")
    assert dockerfile.startswith("FROM base:1\n")
    assert "install -y -q --no-install-recommends prometheus" in dockerfile
    assert "USER prometheus" in dockerfile
    assert stack_images.prometheus_hash(dockerfile, "b1") != stack_images.prometheus_hash(dockerfile, "b2")


def test_every_service_uses_the_host_network_on_loopback_and_publishes_no_port() -> None:
    services = _stack()["services"]
    assert set(services) == {"kafka", "redis", "prometheus", *SLIPSTREAM_SERVICES}
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        assert "ports" not in service, name
    text = compose.stack_file(REPO).read_text()
    addresses = set(re.findall(r"\b(\d+\.\d+\.\d+\.\d+)\b", text))
    assert addresses == {"127.0.0.1"}


def test_the_slipstream_services_run_one_image_as_its_user_after_kafka_and_redis() -> None:
    services = _stack()["services"]
    for name in SLIPSTREAM_SERVICES:
        service = services[name]
        assert service["image"] == "${SLIPSTREAM_IMAGE:-" + stack_images.APP_IMAGE + "}", name
        assert service["user"] == "${SLIPSTREAM_UID:-10001}:${SLIPSTREAM_GID:-10001}", name
        assert set(service["depends_on"]) == {"kafka", "redis"}, name
        env = service["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:${KAFKA_PORT:-9092}", name
    assert services["prometheus"]["image"] == "${PROMETHEUS_IMAGE:-" + stack_images.PROMETHEUS_IMAGE + "}"
    assert services["redis"]["image"] == "${REDIS_IMAGE:-" + images.LOCAL_REDIS_IMAGE + "}"
    assert services["kafka"]["image"] == "${KAFKA_IMAGE:-" + images.local_kafka_image("4.3.1") + "}"


@pytest.mark.parametrize("service", SLIPSTREAM_SERVICES)
def test_each_service_runs_a_real_command(service: str) -> None:
    command = _stack()["services"][service]["command"]
    words = [word for word in command if not word.startswith("-") and not word.startswith("$")]
    verbs = [word for word in words if word.replace("-", "_").isidentifier()]
    assert verbs, command
    result = CliRunner().invoke(cli, [*verbs, "--help"])
    assert result.exit_code == 0, result.output
    options = [word for word in command if word.startswith("--")]
    for option in options:
        assert option in result.output, option


def test_the_prometheus_service_reads_the_repos_config() -> None:
    service = _stack()["services"]["prometheus"]
    mount = next(volume for volume in service["volumes"] if volume.endswith(":ro"))
    source = (compose.stack_file(REPO).parent / mount.split(":")[0]).resolve()
    assert source == REPO / "deploy" / "prometheus"
    mounted = mount.split(":")[1]
    (script,) = service["command"]  # bash -c: the shipped config and rules copied, target files written, then exec
    assert service["entrypoint"] == ["/bin/bash", "-c"]
    assert f"cp {mounted}/prometheus.yml {mounted}/alerts.yml $$etc/" in script
    assert "exec /usr/bin/prometheus --config.file=$$etc/prometheus.yml" in script
    jobs = {path.stem for path in (REPO / "deploy" / "prometheus" / "targets").glob("*.yml")}
    assert {line.split()[1] for line in script.splitlines() if line.startswith("target ")} == jobs


def test_compose_commands_name_the_file_and_project(tmp_path: Path) -> None:
    cmd = compose.compose_command(["docker", "compose"], tmp_path / "c.yml", "p1", "up", "-d")
    assert cmd == ["docker", "compose", "-f", str(tmp_path / "c.yml"), "-p", "p1", "up", "-d"]


def test_the_compose_plugin_is_preferred_when_it_answers(tmp_path: Path) -> None:
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\n[ "$1 $2" = "compose version" ] && echo "Docker Compose version v2.30.0"\n')
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    assert compose.find_compose(str(docker)) == [str(docker), "compose"]


def test_the_hosts_local_cas_reach_the_build_stage_only_as_an_argument(tmp_path: Path) -> None:
    (tmp_path / "a.crt").write_text("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.crt").write_text("-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n")
    (tmp_path / "notes.txt").write_text("not a certificate")
    pem = stack_images.local_ca_certs(tmp_path)
    assert pem.count("BEGIN CERTIFICATE") == 2
    assert "not a certificate" not in pem
    assert stack_images.local_ca_certs(tmp_path / "absent") == ""
    cmd = stack_images.app_build_command("docker", tmp_path, "h", pem, no_cache=False)
    assert cmd[-1] == str(tmp_path)
    assert "--force-rm" in cmd
    assert f"BUILD_CA_CERTS={pem}" in cmd
    assert "--build-arg" not in stack_images.app_build_command("docker", tmp_path, "h", "", no_cache=False)
