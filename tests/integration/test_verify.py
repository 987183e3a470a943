"""`slipstream features verify` end to end on a small simulated log, as a user runs it: the feature log and the online
store (read through Feast's SDK) equal the offline engine, and the run leaves nothing behind — no topic, consumer
group or Redis key, on success, on failure and on Ctrl-C — and never touches the user's Feast repository. With
``--keep`` it says what it kept, and `slipstream topics delete` removes that."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from slipstream.cli.simulate import simulate_fraud_file
from slipstream.schemas.transport import TopicAdmin
from slipstream.verify import project_key_count
from tests.conftest import Services

pytestmark = pytest.mark.integration
PUBLISHING = re.compile(r"to (\S*verify-[0-9a-f]{8}\.)\*")


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("verify") / "fraud.parquet"
    simulate_fraud_file(path, customers=150, terminals=300, days=25, show_progress=False)
    return path


@pytest.fixture
def user_repo(tmp_path: Path) -> Iterator[Path]:
    """A user's state directory whose Feast repository `features apply` wrote: verify must leave it as it is."""
    repo = tmp_path / "state" / "feast"
    repo.mkdir(parents=True)
    (repo / "feature_store.yaml").write_text("project: users_own\n")
    yield repo


def _env(services: Services, tmp_path: Path) -> dict[str, str]:
    return os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_STATE_DIR": str(tmp_path / "state"),
        "SLIPSTREAM_FEAST_REPO_DIR": str(tmp_path / "state" / "feast"),
        "SLIPSTREAM_OFFLINE_DIR": str(tmp_path / "state" / "offline"),
        "SLIPSTREAM_TOPIC_PREFIX": "",
        "COLUMNS": "200",
    }


def _cli(services: Services, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slipstream", *args],
        env=_env(services, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _left(services: Services, prefix: str) -> dict[str, object]:
    """What exists of a verify run's namespace: topics, consumer groups, Redis keys of its Feast project."""
    admin = TopicAdmin(services.bootstrap_servers)
    project = "verify_" + prefix.removesuffix(".").rsplit("verify-", 1)[1]
    return {
        "topics": admin.matching(prefix),
        "groups": admin.groups(prefix),
        "keys": project_key_count(services.redis_url, project),
    }


NOTHING = {"topics": [], "groups": [], "keys": 0}


def _untouched(repo: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in repo.iterdir()) == ["feature_store.yaml"]
    assert (repo / "feature_store.yaml").read_text() == "project: users_own\n"
    assert not (tmp_path / "state" / "offline").exists()


def test_verify_reports_zero_mismatches_and_leaves_nothing(
    services: Services, events: Path, user_repo: Path, tmp_path: Path
) -> None:
    run = _cli(services, tmp_path, "features", "verify", "--events", str(events), "--days", "20", "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["transactions"] > 2000
    assert report["labels"] > 0
    assert report["compared"] == report["transactions"]
    assert report["missing_vectors"] == 0
    assert report["mismatches"] == 0, report["mismatches_by_feature"]
    assert report["max_abs_diff"] <= 1e-9
    assert report["online_entities_compared"] > 300
    assert report["online_mismatches"] == 0
    removed = report["removed"]
    assert removed["topics"] >= 10  # the contract topics and the engine's internal ones
    assert removed["consumer_groups"] >= 2  # one per engine stage
    assert removed["redis_keys"] >= 300  # one hash per customer and terminal seen
    assert _left(services, removed["topic_prefix"]) == NOTHING
    _untouched(user_repo, tmp_path)


def test_verify_keep_says_what_it_kept_and_topics_delete_removes_it(
    services: Services, events: Path, user_repo: Path, tmp_path: Path
) -> None:
    run = _cli(services, tmp_path, "features", "verify", "--events", str(events), "--days", "5", "--json", "--keep")
    assert run.returncode == 0, run.stderr[-3000:]
    kept = json.loads(run.stdout)["kept"]
    prefix, project = kept["topic_prefix"], kept["feast_project"]
    try:
        assert re.fullmatch(r"verify-[0-9a-f]{8}\.", prefix), prefix
        assert project == "verify_" + prefix[7:15]
        assert kept["topics"] == _left(services, prefix)["topics"]
        assert f"{prefix}transactions" in kept["topics"]
        assert all(t.startswith(prefix) for t in kept["topics"])
        assert kept["consumer_groups"] == _left(services, prefix)["groups"] != []
        assert kept["redis_key_pattern"] == f"*{project}"
        assert kept["redis_keys"] == project_key_count(services.redis_url, project) > 0
        assert (Path(kept["feast_repo"]) / "feature_store.yaml").read_text().startswith(f"project: {project}\n")
        assert f"--prefix {prefix} --redis-project {project} --yes" in kept["remove_with"]
        _untouched(user_repo, tmp_path)

        delete = _cli(services, tmp_path, "topics", "delete", "--prefix", prefix, "--redis-project", project, "--yes")
        assert delete.returncode == 0, delete.stderr
        deleted = f"deleted {len(kept['topics'])} topics, {len(kept['consumer_groups'])} consumer groups and "
        assert deleted + f"{kept['redis_keys']:,} Redis keys" in delete.stderr
        assert _left(services, prefix) == NOTHING
    finally:  # whatever the assertions above left
        admin = TopicAdmin(services.bootstrap_servers)
        admin.delete_prefix(prefix)
        admin.delete_groups(admin.groups(prefix))
        project_key_count(services.redis_url, project, delete=True)
        shutil.rmtree(Path(kept["feast_repo"]).parent, ignore_errors=True)


def test_a_failing_verify_removes_what_it_created(services: Services, user_repo: Path, tmp_path: Path) -> None:
    events = tmp_path / "bad.parquet"
    simulate_fraud_file(events, customers=150, terminals=300, days=3, show_progress=False)
    tx = pd.read_parquet(events)
    tx.loc[len(tx) // 2, "amount"] = -3.0  # the schema check passes; the contract refuses the row when it is sent
    tx.to_parquet(events, index=False)

    run = _cli(services, tmp_path, "features", "verify", "--events", str(events))
    assert run.returncode == 1, run.stderr[-3000:]
    assert "amount must be a finite number >= 0, got -3.0" in run.stderr
    assert "Traceback" not in run.stderr
    match = PUBLISHING.search(run.stderr)
    assert match is not None, run.stderr
    assert f"removing the {match.group(1)}* topics" in run.stderr
    assert _left(services, match.group(1)) == NOTHING
    _untouched(user_repo, tmp_path)


def _as_in_a_terminal() -> None:
    """Ctrl-C as a user at a terminal sends it: the command starts with SIGINT neither ignored nor blocked, whatever
    the test runner inherited (a background job of a shell without job control starts with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_an_interrupted_verify_removes_what_it_created(
    services: Services, events: Path, user_repo: Path, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "features", "verify", "--events", str(events), "--days", "20"],
        env=_env(services, tmp_path),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_in_a_terminal,
    )
    assert proc.stderr is not None
    said: list[str] = []
    try:
        for line in proc.stderr:  # readiness from the command's own output: the engine is starting
            said.append(line)
            if "running the online engine" in line:
                proc.send_signal(signal.SIGINT)
                break
        _, rest = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(said) + rest
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr
    match = PUBLISHING.search(stderr)
    assert match is not None, stderr
    assert _left(services, match.group(1)) == NOTHING
    _untouched(user_repo, tmp_path)
