"""A registered version's model card alone (``model/model_card.json``), without the ONNX artifact: what the drift
monitor and the closed loop need of a version (its reference distributions, validation metrics, threshold)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from slipstream.models.artifacts import CARD_FILE
from slipstream.models.exceptions import RegistryError
from slipstream.models.registry import ARTIFACT_DIR, ModelRegistry


def read_card(registry: ModelRegistry, name: str, version: str | int) -> dict[str, Any]:
    """The model card of ``name`` version ``version``; :class:`RegistryError` naming both if it cannot be read."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file: no bar in logs
    try:
        model_version = registry.client.get_model_version(name, str(version))
        with tempfile.TemporaryDirectory() as tmp:
            local = registry.client.download_artifacts(str(model_version.run_id), f"{ARTIFACT_DIR}/{CARD_FILE}", tmp)
            card: dict[str, Any] = json.loads(Path(local).read_text())
    except (MlflowException, OSError, ValueError) as exc:
        msg = f"cannot read the model card of {name!r} version {version}: {exc}"
        raise RegistryError(msg) from exc
    return card


def version_run_id(registry: ModelRegistry, name: str, version: str | int) -> str:
    """The MLflow run that registered ``name`` version ``version`` (where decisions' evidence is filed)."""
    try:
        return str(registry.client.get_model_version(name, str(version)).run_id)
    except MlflowException as exc:
        msg = f"no version {version} of model {name!r}: {exc}"
        raise RegistryError(msg) from exc
