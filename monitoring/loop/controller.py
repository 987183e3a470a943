"""The closed loop's host: reads ``model-events``, ``drift``, ``outcomes`` and ``shadow-comparisons`` into a
:class:`~slipstream.monitoring.loop.state.LoopState`, asks :func:`~slipstream.monitoring.loop.decide.decide` what
is due, and carries it out — MLflow aliases, a retrain in a child process, the decision's record on
``model-events`` and its evidence on the model version in MLflow.

**Restartable and idempotent.** The state is rebuilt from the topics on every start (``model-events`` in full: it is
where the loop's own past decisions are); nothing is decided before the reader has caught up with them. Every
decision's model event carries the decision's id as its event id, and the loop acts on one decision at a time and
waits to read its own record back before deciding again, so a decision is never carried out twice — not across a
restart either. A retrain the previous process started and did not finish is looked up in MLflow by its id (a
version registered by it is taken, not trained again) and otherwise run again under the same id.

**Training never blocks scoring**: it runs in a child process (`slipstream loop retrain`, with a progress bar in the
loop's log), reading the champion's logged inputs from Kafka; the scorers never wait for the loop.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slipstream.monitoring.figures import micros
from slipstream.monitoring.loop.decide import Decision, decide
from slipstream.monitoring.loop.policy import Policy
from slipstream.monitoring.loop.state import LoopState
from slipstream.monitoring.monitor import TopicReader
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport.connection import KafkaLike

log = logging.getLogger(__name__)
TOPICS = ("model-events", "drift", "outcomes", "shadow-comparisons")
ACTOR = "slipstream loop"
CHALLENGER_ALIAS = "challenger"  # the loop's retrained challenger (promote() clears it when it wins)
PROGRESS_EVERY_S = 1.0  # how often the positions read (and decided on) are committed to the progress group
PREVIOUS_ALIAS = "challenger-previous"  # a replaced champion, shadowed for the rollback watch


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, tz=UTC)


@dataclass
class Retraining:
    retrain_id: str
    plan: dict[str, Any]
    champion: str
    stream_time_us: int
    proc: subprocess.Popen[bytes] | None = None
    out: Path | None = None


@dataclass
class LoopStats:
    records: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    failures: int = 0


class LoopController:
    """One model's loop (``policy.model.name``). ``start_retrain(plan, out_path)`` starts the retrain child."""

    def __init__(
        self,
        bootstrap: KafkaLike,
        contracts: Contracts,
        registry: Any,
        producer: Any,
        policy: Policy,
        start_retrain: Callable[[Mapping[str, Any], Path], subprocess.Popen[bytes]],
        work_dir: Path,
        *,
        dry_run: bool = False,
        say: Callable[[str], None] | None = None,
        progress_group: str | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.contracts = contracts
        self.registry = registry
        self.producer = producer
        self.policy = policy
        self.model = policy.model.name
        self.start_retrain = start_retrain
        self.work_dir = work_dir
        self.dry_run = dry_run
        self.say = say or log.info
        self.progress_group = progress_group
        self.state = LoopState(policy)
        self.stats = LoopStats()
        self._waiting_for: str | None = None  # the id of our last model event, until it is read back
        self._retraining: Retraining | None = None
        self._started: dict[str, dict[str, Any]] = {}  # retrain id -> its RETRAIN_STARTED record, until it ends
        self._cards: set[str] = set()
        self._announced: set[str] = set()  # dry run: decisions already printed
        self._live = False  # caught up with the history: events read from now on are new

    # ------------------------------------------------------------------ the loop
    def run(self, stop: threading.Event) -> LoopStats:
        with TopicReader(self.bootstrap, self.contracts, TOPICS, progress_group=self.progress_group) as reader:
            ends = reader.ends()
            caught_up = False
            committed_at = 0.0
            while not stop.is_set():
                tagged, failures = reader.poll_tagged(5000, 0.2)
                self.stats.failures += len(failures)
                for topic, record in tagged:
                    self._read(topic, record)
                if not caught_up:
                    if not reader.caught_up(ends):
                        continue
                    caught_up = self._live = True
                    self.say(f"caught up: {self.stats.records:,} records; champion v{self.state.champion}")
                    self._resume()
                self._step()
                if self.progress_group is not None and time.monotonic() - committed_at >= PROGRESS_EVERY_S:
                    reader.commit_positions()  # read, and decided on: what a drain waits for
                    committed_at = time.monotonic()
        if self._retraining is not None and self._retraining.proc is not None:
            self._retraining.proc.terminate()
        return self.stats

    def _read(self, topic: str, record: Mapping[str, Any]) -> None:
        self.stats.records += 1
        self.state.update(record)
        if topic != "model-events" or str(record.get("model_name")) != self.model:
            return
        if str(record["event_id"]) == self._waiting_for:
            self._waiting_for = None
        action = str(record["action"])
        evidence = _evidence(record)
        if action == "RETRAIN_STARTED":
            self._started[str(record["event_id"])] = dict(record)
        elif action in ("RETRAINED", "RETRAIN_FAILED"):
            self._started.pop(str(evidence.get("retrain_id", "")), None)
        if action in ("PROMOTED", "ROLLED_BACK", "REGISTERED"):
            self._note_card(str(record["version"]))
        previous = record.get("previous_version")
        if (
            action == "PROMOTED"
            and self._live
            and not self.dry_run
            and record.get("stream_time") is not None
            and previous
        ):
            # any promotion in the stream (the loop's, or by hand with a stream time) is watched: its predecessor is
            # shadowed, so both are scored on the same events until the rollback gate has its labels
            if self.registry.alias_version(self.model, PREVIOUS_ALIAS) != str(previous):
                self.registry.actor = ACTOR
                self.registry.set_challenger(self.model, str(previous), PREVIOUS_ALIAS, self.producer)

    def _note_card(self, version: str) -> None:
        if version in self._cards or version in ("", "unregistered"):
            return
        from slipstream.models.cards import read_card
        from slipstream.models.exceptions import RegistryError

        try:
            card = read_card(self.registry, self.model, version)
        except RegistryError as exc:
            self.say(f"cannot read the card of v{version}: {exc}")
            return
        self._cards.add(version)
        self.state.note_card(version, card.get("metrics", {}))

    def _resume(self) -> None:
        """Caught up. A rollback watch still open keeps its predecessor in shadow: the PROMOTED record read while
        catching up (written before this process was live, or by a run that stopped) did not shadow it, so when the
        loop went live would change its decision. A retrain started by an earlier process and not ended: take what
        it registered, or run it again."""
        watch = self.state.watch
        if watch is not None and not self.dry_run:
            if self.registry.alias_version(self.model, PREVIOUS_ALIAS) != watch.predecessor:
                self.say(f"rollback watch of v{watch.champion} open: v{watch.predecessor} shadowed again")
                self.registry.actor = ACTOR
                self.registry.set_challenger(self.model, watch.predecessor, PREVIOUS_ALIAS, self.producer)
        for retrain_id, record in list(self._started.items()):
            plan = _evidence(record).get("plan", {})
            stream_us = micros(record["stream_time"]) if record.get("stream_time") is not None else 0
            job = Retraining(retrain_id, plan, str(record["version"]), stream_us)
            if self.dry_run:
                self.say(f"dry run: retrain {retrain_id} was left unfinished; it would be resumed")
                continue
            from slipstream.monitoring.loop.retrain import find_retrained

            version = find_retrained(self.registry, self.model, retrain_id)
            if version is not None:
                self.say(f"retrain {retrain_id} had registered v{version} before the restart: taking it")
                self._finish(job, {"version": version, "resumed": True})
            else:
                self.say(f"retrain {retrain_id} did not finish before the restart: running it again")
                self._spawn(job)

    def _step(self) -> None:
        if self._retraining is not None:
            self._poll_retrain()
            return
        if self._waiting_for is not None:
            return
        for decision in decide(self.state, self.policy):
            if self.dry_run:
                if decision.decision_id not in self._announced:
                    self._announced.add(decision.decision_id)
                    self.say(f"dry run: would {decision.action} v{decision.version}: {decision.reason}")
                continue
            self._act(decision)
            return  # one at a time: its record is read back before the next decision

    # ------------------------------------------------------------------ acting
    def _note(self, d: Decision) -> dict[str, Any]:
        fields = d.event_fields()
        return {
            "event_id": fields["event_id"],
            "reason": fields["reason"],
            "evidence": fields["evidence"],
            "stream_time": _dt(d.stream_time_us),
        }

    def _act(self, d: Decision) -> None:
        self.stats.decisions[d.action] = self.stats.decisions.get(d.action, 0) + 1
        self.say(f"{d.action} v{d.version} at {_dt(d.stream_time_us).isoformat()[:16]}: {d.reason}")
        registry, name, note = self.registry, self.model, self._note(d)
        registry.actor = ACTOR
        if d.action == "RETRAIN":
            self._write(d.event_fields())
            plan = dict(d.evidence.get("plan", {}))
            self._spawn(Retraining(d.decision_id, plan, d.version, d.stream_time_us))
        elif d.action == "PROMOTE":
            registry.promote(name, d.version, producer=self.producer, note=note)
            self._waiting_for = d.decision_id  # reading it back shadows the predecessor (see _read)
        elif d.action == "HOLD":
            self._write(d.event_fields())
        elif d.action == "REJECT":
            self._write(d.event_fields())
            if registry.alias_version(name, CHALLENGER_ALIAS) == d.version:
                registry.remove_challenger(name, CHALLENGER_ALIAS, self.producer)
        elif d.action == "ROLLBACK":
            registry.rollback(name, self.producer, reason=d.reason, note=note)
            self._waiting_for = d.decision_id
            if registry.alias_version(name, PREVIOUS_ALIAS) is not None:
                registry.remove_challenger(name, PREVIOUS_ALIAS, self.producer)
        elif d.action == "KEEP":
            if registry.alias_version(name, PREVIOUS_ALIAS) is not None:
                registry.remove_challenger(name, PREVIOUS_ALIAS, self.producer, note=note)
                self._waiting_for = d.decision_id
            else:
                self._write({**d.event_fields(), "action": "CHALLENGER_REMOVED", "alias": PREVIOUS_ALIAS})
        self._file_evidence(d.version, d.decision_id, d.model_action, d.reason, d.evidence)

    def _write(self, fields: Mapping[str, Any]) -> None:
        """A model event of the loop's own (the registry writes those that move an alias)."""
        record = {
            "event_id": str(uuid.uuid4()),
            "event_time": datetime.now(UTC),
            "alias": "",
            "artifact_uri": "",
            "checksum": "",
            "previous_version": None,
            "actor": ACTOR,
            "reason": None,
            "evidence": None,
            **fields,
        }
        if isinstance(record.get("stream_time"), int):
            record["stream_time"] = _dt(record["stream_time"])
        self.producer.send("model-events", record)
        self.producer.flush()
        self._waiting_for = str(record["event_id"])

    def _file_evidence(self, version: str, decision_id: str, action: str, reason: str, evidence: Any) -> None:
        """The decision beside the model version in MLflow: a JSON file in its run, a tag with the reason."""
        from slipstream.models.cards import version_run_id
        from slipstream.models.exceptions import RegistryError

        try:
            run_id = version_run_id(self.registry, self.model, version)
            body = {"decision_id": decision_id, "action": action, "reason": reason, "evidence": evidence}
            safe = decision_id.replace(":", "_").replace("/", "_")
            self.registry.client.log_text(run_id, json.dumps(body, indent=2, default=str), f"decisions/{safe}.json")
            self.registry.client.set_model_version_tag(self.model, version, f"loop.{action}", reason[:4000])
        except (RegistryError, Exception) as exc:  # noqa: BLE001 - evidence filing must not stop the loop
            self.say(f"could not file the evidence of {decision_id} on v{version} in MLflow: {exc}")

    # ------------------------------------------------------------------ retraining
    def _spawn(self, job: Retraining) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        job.out = self.work_dir / f"{job.retrain_id.replace(':', '_')}.json"
        job.out.unlink(missing_ok=True)
        plan = {**job.plan, "retrain_id": job.retrain_id, "model_name": self.model, "champion_version": job.champion}
        job.proc = self.start_retrain(plan, job.out)
        self._retraining = job
        self.say(f"retrain {job.retrain_id}: training in child process {job.proc.pid}")

    def _poll_retrain(self) -> None:
        job = self._retraining
        if job is None or job.proc is None or job.proc.poll() is None:
            return
        result: dict[str, Any] = {}
        if job.out is not None and job.out.is_file():
            result = json.loads(job.out.read_text())
        if job.proc.returncode != 0 and not result:
            result = {"error": f"the retrain process exited with code {job.proc.returncode}"}
        self._finish(job, result)

    def _finish(self, job: Retraining, result: Mapping[str, Any]) -> None:
        self._retraining = None
        version = result.get("version")
        evidence = {"retrain_id": job.retrain_id, **result}
        base = {
            "model_name": self.model,
            "stream_time": job.stream_time_us,
            "evidence": json.dumps(evidence, default=str),
        }
        if version:
            self._write(
                {
                    **base,
                    "action": "RETRAINED",
                    "version": str(version),
                    "previous_version": job.champion,
                    "reason": f"retrained from {job.plan.get('window')}",
                }
            )
            self.registry.actor = ACTOR
            self.registry.set_challenger(self.model, str(version), CHALLENGER_ALIAS, self.producer)
            self._file_evidence(str(version), job.retrain_id, "RETRAINED", "retrained by the loop", evidence)
        else:
            offline = result.get("offline") or {}
            reason = result.get("error") or (
                f"offline gate: challenger {offline.get('metric')} {offline.get('challenger', float('nan')):.4f} < "
                f"champion {offline.get('champion', float('nan')):.4f} + {offline.get('margin')} on the newest mature "
                f"holdout ({offline.get('rows')} rows, {offline.get('positives')} frauds)"
            )
            self._write({**base, "action": "RETRAIN_FAILED", "version": job.champion, "reason": str(reason)[:2000]})
        self.stats.decisions["RETRAINED" if version else "RETRAIN_FAILED"] = (
            self.stats.decisions.get("RETRAINED" if version else "RETRAIN_FAILED", 0) + 1
        )


def _evidence(record: Mapping[str, Any]) -> dict[str, Any]:
    text = record.get("evidence")
    if not text:
        return {}
    try:
        value = json.loads(str(text))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def retrain_command(plan: Mapping[str, Any], out: Path) -> Sequence[str]:
    """The child's command line: `slipstream loop retrain --plan <json> --out <file>`."""
    import sys

    return [sys.executable, "-m", "slipstream", "loop", "retrain", "--plan", json.dumps(plan), "--out", str(out)]
