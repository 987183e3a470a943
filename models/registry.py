"""The model registry on MLflow: register behind the ONNX parity gate, promote, roll back, load with checks.

Layout (any tracking URI works; the default is ``sqlite:///<state_dir>/mlflow.db``, artifacts in
``<state_dir>/mlruns``): one experiment ``slipstream/<name>`` per model; one run per registration holding params,
metrics and the tags ``data_window``, ``data_hash``, ``features``, and the artifacts ``model/model.onnx``,
``model/model.txt`` and ``model/model_card.json``; one registered-model version per run, tagged ``onnx_sha256``.
The ``champion`` alias is the serving model; the registered-model tag ``champion_history`` (a JSON list of versions)
is what :meth:`ModelRegistry.rollback` walks back.

The model card (``model_card.json``) holds what serving needs without LightGBM: ``kind`` (``binary``: the score is
the class-1 probability and ``threshold`` the decision cut; ``ranking``: the score is the ranker's raw score, only
its order means something, and ``threshold`` is unused — register rankers with 0.0), ``features`` in input order,
``onnx_sha256``, ``reference`` distributions, ``metrics``, ``data_window``, ``data_hash``, the registration's parity
report and a ``parity_sample`` (up to 64 rows and LightGBM's predictions for them) that
:meth:`LoadedModel.check_parity` replays through the ONNX scorer before a model serves.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

if TYPE_CHECKING:  # LightGBM loads only where a booster is exported, never to score an ONNX model
    import lightgbm as lgb

from slipstream.models.artifacts import (
    BOOSTER_FILE,
    CARD_FILE,
    ONNX_FILE,
    sha256,
    verify_checksum,
    verify_features,
)
from slipstream.models.exceptions import ParityError, RegistryError
from slipstream.models.onnx_export import (
    PARITY_TOL,
    ModelKind,
    OnnxScorer,
    ParityReport,
    check_parity_sample,
    ensure_parity,
    export_onnx,
    model_kind,
    parity_sample,
    trimmed,
)
from slipstream.schemas.secrets import mask_url
from slipstream.schemas.transport import EventProducer

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
CHECKSUM_TAG = "onnx_sha256"
ARTIFACT_DIR = "model"
MODEL_EVENTS = "model-events"
# A decision's context on its model event: "reason", "evidence" (JSON text), "stream_time" (event time, datetime)
Note = Mapping[str, Any]


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    checksum: str
    run_id: str
    parity: ParityReport


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: tuple[str, ...]
    metrics: dict[str, float]
    created: datetime


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    onnx_bytes: bytes
    scorer: OnnxScorer
    feature_names: tuple[str, ...]
    threshold: float
    card: dict[str, Any]

    @property
    def kind(self) -> ModelKind:
        """``binary`` (scores are probabilities) or ``ranking`` (raw scores); cards from before ``kind``: binary."""
        kind = self.card.get("kind", "binary")
        if kind not in ("binary", "ranking"):
            msg = f"{self.name!r} version {self.version}: unknown model kind {kind!r} in its model card"
            raise RegistryError(msg)
        return "ranking" if kind == "ranking" else "binary"

    def check_parity(self, tol: float = PARITY_TOL) -> ParityReport:
        """Score the card's parity sample with :attr:`scorer` and compare with LightGBM's predictions recorded at
        registration; :class:`ParityError` (model, version, worst row, both values, diff, ``tol``) unless every
        row agrees within ``tol``, or when the card has no parity sample."""
        what = f"model {self.name!r} version {self.version}"
        return check_parity_sample(self.scorer, self.card.get("parity_sample"), what, tol)


def default_tracking_uri(state_dir: Path) -> str:
    return f"sqlite:///{(state_dir / 'mlflow.db').resolve()}"


class ModelRegistry:
    """Registered models, their versions and aliases, behind one MLflow client (no global MLflow state)."""

    def __init__(self, tracking_uri: str, artifact_root: str | Path, *, actor: str = "slipstream") -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root if isinstance(artifact_root, str) else artifact_root.resolve().as_uri()
        self.actor = actor
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    # --- registration ---

    def register(
        self,
        name: str,
        booster: lgb.Booster,
        feature_names: Sequence[str],
        *,
        threshold: float,
        reference: Mapping[str, Any],
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        data_window: tuple[str, str],
        data_hash: str,
        sample: npt.ArrayLike,
        producer: EventProducer | None = None,
    ) -> RegisteredModel:
        """Export to ONNX, refuse unless it matches LightGBM on ``sample`` (:class:`ParityError`), then register.

        A binary booster (objective ``binary``) or a ranker (``lambdarank``, ``rank_xendcg``); the card's ``kind``
        says which. ``threshold`` is the binary decision cut; a ranker has none (pass 0.0, it is not used). The card
        keeps :data:`~models.onnx_export.PARITY_ROWS` evenly spaced rows of ``sample`` with LightGBM's predictions
        (``parity_sample``) for :meth:`LoadedModel.check_parity`. With a producer, a REGISTERED event (or, when the
        gate refuses the model, a REFUSED one with the reason) goes to ``model-events``.
        """
        booster = trimmed(booster)
        kind = model_kind(booster)
        onnx_bytes = export_onnx(booster, feature_names)
        checksum = sha256(onnx_bytes)
        x_sample = np.asarray(sample, dtype=np.float64)
        try:
            parity = ensure_parity(booster, onnx_bytes, x_sample)
        except ParityError as exc:
            if producer is not None:
                self._announce(producer, "REFUSED", name, "unregistered", checksum, "", reason=str(exc))
            raise
        card = {
            "name": name,
            "kind": kind,
            "features": list(feature_names),
            "threshold": float(threshold),
            "onnx_sha256": checksum,
            "onnx_input": "double",
            "data_window": list(data_window),
            "data_hash": data_hash,
            "metrics": {k: float(v) for k, v in metrics.items()},
            "params": {k: str(v) for k, v in params.items()},
            "parity": {"max_abs_diff": parity.max_abs_diff, "n": parity.n, "tol": parity.tol},
            "parity_sample": parity_sample(booster, x_sample),
            "reference": dict(reference),
        }
        experiment_id = self._experiment(name)
        run = self.client.create_run(experiment_id, run_name=f"{name}-{data_window[0]}..{data_window[1]}")
        run_id = run.info.run_id
        try:
            for key, value in params.items():
                self.client.log_param(run_id, key, str(value)[:6000])
            for key, value in metrics.items():
                self.client.log_metric(run_id, key, float(value))
            tags = {
                "data_window": f"{data_window[0]}..{data_window[1]}",
                "data_hash": data_hash,
                "features": ",".join(feature_names),
                "threshold": repr(float(threshold)),
                "kind": kind,
                CHECKSUM_TAG: checksum,
                "parity_max_abs_diff": f"{parity.max_abs_diff:.3g}",
            }
            for key, text in tags.items():
                self.client.set_tag(run_id, key, text)
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                (folder / ONNX_FILE).write_bytes(onnx_bytes)
                (folder / BOOSTER_FILE).write_text(booster.model_to_string())
                (folder / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True))
                for file in (ONNX_FILE, BOOSTER_FILE, CARD_FILE):
                    self.client.log_artifact(run_id, str(folder / file), ARTIFACT_DIR)
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")
        if not self._exists(name):
            self.client.create_registered_model(name, description="Registered by Slipstream.")
        source = f"{run.info.artifact_uri}/{ARTIFACT_DIR}"
        version = self.client.create_model_version(name, source, run_id, tags={CHECKSUM_TAG: checksum})
        if producer is not None:
            self._announce(producer, "REGISTERED", name, str(version.version), checksum, f"{source}/{ONNX_FILE}")
        return RegisteredModel(name, str(version.version), checksum, run_id, parity)

    def _announce(
        self,
        producer: EventProducer,
        action: str,
        name: str,
        version: str,
        checksum: str,
        artifact_uri: str,
        *,
        reason: str | None = None,
    ) -> None:
        record = {
            "event_id": str(uuid.uuid4()),
            "event_time": datetime.now(UTC),
            "action": action,
            "model_name": name,
            "alias": "",
            "version": version,
            "previous_version": None,
            "artifact_uri": mask_url(artifact_uri),  # on a topic, shown by the dashboard: never a credential
            "checksum": checksum,
            "actor": self.actor,
            "reason": reason,
        }
        producer.send(MODEL_EVENTS, record)
        producer.flush()

    def _experiment(self, name: str) -> str:
        title = f"slipstream/{name}"
        found = self.client.get_experiment_by_name(title)
        if found is not None:
            return str(found.experiment_id)
        return str(self.client.create_experiment(title, artifact_location=f"{self.artifact_root}/{name}"))

    def _exists(self, name: str) -> bool:
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            return False
        return True

    # --- aliases ---

    def alias_version(self, name: str, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        self._version(name, str(version))
        self.client.set_registered_model_alias(name, alias, str(version))

    def _version(self, name: str, version: str) -> Any:
        try:
            return self.client.get_model_version(name, version)
        except MlflowException as exc:
            msg = f"model {name!r} has no version {version!r}"
            raise RegistryError(msg) from exc

    def _history(self, name: str) -> list[str]:
        try:
            tags = self.client.get_registered_model(name).tags
        except MlflowException as exc:
            msg = f"no registered model named {name!r}"
            raise RegistryError(msg) from exc
        return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]

    def promote(
        self, name: str, version: str | int, *, producer: EventProducer | None = None, note: Note | None = None
    ) -> dict[str, Any]:
        """Make ``version`` the champion; return (and publish, with a producer) the PROMOTED model event. ``note``:
        the decision's ``reason``, ``evidence`` (JSON text) and ``stream_time``, as the closed loop records them."""
        version = str(version)
        self._version(name, version)
        previous = self.alias_version(name, CHAMPION)
        if previous == version:
            msg = f"version {version!r} of {name!r} is already the champion"
            raise RegistryError(msg)
        history = self._history(name)
        if previous is not None and (not history or history[-1] != previous):
            history.append(previous)
        history.append(version)
        self.client.set_registered_model_alias(name, CHAMPION, version)
        self.client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        event = self._event(name, "PROMOTED", version, previous, producer, reason=None, note=note)
        if self.alias_version(name, CHALLENGER) == version:  # the challenger won: it is no longer one
            self.client.delete_registered_model_alias(name, CHALLENGER)
            self._event(name, "CHALLENGER_REMOVED", version, None, producer, reason="promoted", alias=CHALLENGER)
        return event

    def rollback(
        self, name: str, producer: EventProducer | None = None, *, reason: str | None = None, note: Note | None = None
    ) -> dict[str, Any]:
        """Make the previous champion the champion again; return (and publish) the ROLLED_BACK event."""
        history = self._history(name)
        current = self.alias_version(name, CHAMPION)
        if len(history) < 2 or current is None:
            msg = f"model {name!r} has no previous champion to roll back to (history {history})"
            raise RegistryError(msg)
        history.pop()
        target = history[-1]
        self.client.set_registered_model_alias(name, CHAMPION, target)
        self.client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        return self._event(name, "ROLLED_BACK", target, current, producer, reason=reason, note=note)

    # --- challengers ---

    def set_challenger(
        self,
        name: str,
        version: str | int,
        alias: str = CHALLENGER,
        producer: EventProducer | None = None,
        note: Note | None = None,
    ) -> dict[str, Any]:
        """Point challenger ``alias`` at ``version``; return (and publish) the CHALLENGER_SET event, whose
        ``previous_version`` is the version the alias pointed to before (if any). The champion cannot be one."""
        version = str(version)
        if alias == CHAMPION:
            msg = f"alias {alias!r} is the serving model's, not a challenger's"
            raise RegistryError(msg)
        self._version(name, version)
        previous = self.alias_version(name, alias)
        self.client.set_registered_model_alias(name, alias, version)
        return self._event(name, "CHALLENGER_SET", version, previous, producer, reason=None, alias=alias, note=note)

    def remove_challenger(
        self, name: str, alias: str, producer: EventProducer | None = None, note: Note | None = None
    ) -> dict[str, Any]:
        """Delete challenger ``alias``; return (and publish) the CHALLENGER_REMOVED event (``version``: the one it
        pointed to). :class:`RegistryError` when the alias points nowhere."""
        if alias == CHAMPION:
            msg = f"alias {alias!r} is the serving model's, not a challenger's"
            raise RegistryError(msg)
        version = self.alias_version(name, alias)
        if version is None:
            msg = f"model {name!r} has no alias {alias!r}"
            raise RegistryError(msg)
        self.client.delete_registered_model_alias(name, alias)
        return self._event(name, "CHALLENGER_REMOVED", version, None, producer, reason=None, alias=alias, note=note)

    def challengers(self, name: str, prefix: str = CHALLENGER) -> dict[str, str]:
        """Alias -> version of every alias of ``name`` starting with ``prefix`` (none when ``name`` is unknown)."""
        try:
            aliases = self.client.get_registered_model(name).aliases
        except MlflowException:
            return {}
        return {str(a): str(v) for a, v in sorted(aliases.items()) if str(a).startswith(prefix) and a != CHAMPION}

    def _event(
        self,
        name: str,
        action: str,
        version: str,
        previous: str | None,
        producer: EventProducer | None,
        *,
        reason: str | None,
        alias: str = CHAMPION,
        note: Note | None = None,
    ) -> dict[str, Any]:
        model_version = self._version(name, version)
        record: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "event_time": datetime.now(UTC),
            "action": action,
            "model_name": name,
            "alias": alias,
            "version": version,
            "previous_version": previous,
            "artifact_uri": mask_url(f"{model_version.source}/{ONNX_FILE}"),
            "checksum": model_version.tags.get(CHECKSUM_TAG, ""),
            "actor": self.actor,
            "reason": reason,
            **(note or {}),
        }
        if producer is not None:
            producer.send(MODEL_EVENTS, record)
            producer.flush()
        return record

    # --- reading ---

    def list_versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name``, newest first, with its aliases and its run's metrics."""
        try:
            registered = self.client.get_registered_model(name)
        except MlflowException as exc:
            msg = f"no registered model named {name!r}"
            raise RegistryError(msg) from exc
        versions = self.client.search_model_versions(f"name = '{name}'")
        aliases: dict[str, list[str]] = {}
        for alias, version in registered.aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        out = []
        for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
            metrics = self.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
            created = datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC)
            out.append(
                VersionInfo(str(mv.version), tuple(sorted(aliases.get(str(mv.version), ()))), dict(metrics), created)
            )
        return out

    def load(self, name: str, alias: str = CHAMPION, *, expected_features: Sequence[str] | None = None) -> LoadedModel:
        """The ONNX model behind ``alias``, its checksum verified (:class:`ArtifactCorruptError`) and, given
        ``expected_features``, its feature list too (:class:`FeatureMismatchError`)."""
        version = self.alias_version(name, alias)
        if version is None:
            msg = f"model {name!r} has no version with alias {alias!r}"
            raise RegistryError(msg)
        return self.load_version(name, version, expected_features=expected_features)

    def load_version(
        self, name: str, version: str | int, *, expected_features: Sequence[str] | None = None
    ) -> LoadedModel:
        """Version ``version`` of ``name`` (e.g. from a PROMOTED model event), with the checks of :meth:`load`."""
        version = str(version)
        model_version = self._version(name, version)
        expected_sum = model_version.tags.get(CHECKSUM_TAG)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = Path(self.client.download_artifacts(model_version.run_id, ARTIFACT_DIR, tmp))
            except (MlflowException, OSError) as exc:
                msg = f"cannot fetch the artifacts of {name!r} version {version}: {exc}"
                raise RegistryError(msg) from exc
            onnx_bytes = (local / ONNX_FILE).read_bytes()
            card: dict[str, Any] = json.loads((local / CARD_FILE).read_text())
        what = f"{name!r} version {version} ({ONNX_FILE})"
        verify_checksum(onnx_bytes, expected_sum or card["onnx_sha256"], what)
        features = tuple(card["features"])
        if expected_features is not None:
            verify_features(features, expected_features, f"{name!r} version {version}")
        loaded = LoadedModel(
            name, version, onnx_bytes, OnnxScorer(onnx_bytes), features, float(card["threshold"]), card
        )
        _ = loaded.kind  # an unknown kind is refused here, not at the first request
        return loaded
