"""Model versions for a replay: from the slice (portable), else from a registry; served by the scorer's watcher.

:class:`SliceModels` is a :class:`~slipstream.serving.model_watcher.ModelSource`: the replayed scorer loads, checks
(checksum, parity sample) and swaps models exactly as a production scorer does, only from the slice's copies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from slipstream.models.artifacts import verify_checksum
from slipstream.models.onnx_export import OnnxScorer
from slipstream.models.registry import CHAMPION, LoadedModel, ModelRegistry
from slipstream.replay.exceptions import ReplayError
from slipstream.replay.slice_file import SliceReader
from slipstream.schemas.exceptions import SlipstreamError


class SliceModels:
    def __init__(
        self, reader: SliceReader, champions: Mapping[str, str], fallback: ModelRegistry | None = None
    ) -> None:
        self._reader = reader
        self.champions = dict(champions)
        self._fallback = fallback
        self._loaded: dict[tuple[str, str], LoadedModel] = {}
        self.sources: dict[str, str] = {}  # "model/version" -> "slice" | "registry"

    def alias_version(self, name: str, alias: str) -> str | None:
        return self.champions.get(name) if alias == CHAMPION else None

    def has(self, name: str, version: str) -> bool:
        return self._reader.has(f"models/{name}/{version}/model.onnx")

    def load_version(self, name: str, version: str | int) -> LoadedModel:
        key = (name, str(version))
        if key not in self._loaded:
            self._loaded[key] = self._load(*key)
        return self._loaded[key]

    def _load(self, name: str, version: str) -> LoadedModel:
        base = f"models/{name}/{version}"
        if self.has(name, version):
            onnx_bytes = self._reader.read_bytes(f"{base}/model.onnx")
            card: dict[str, Any] = json.loads(self._reader.read_bytes(f"{base}/card.json"))
            verify_checksum(onnx_bytes, str(card["onnx_sha256"]), f"{name!r} version {version} in the slice")
            self.sources[f"{name}/{version}"] = "slice"
            loaded = LoadedModel(
                name,
                version,
                onnx_bytes,
                OnnxScorer(onnx_bytes),
                tuple(card["features"]),
                float(card["threshold"]),
                card,
            )
            _ = loaded.kind
            return loaded
        if self._fallback is None:
            msg = f"model {name!r} version {version} is neither in the slice nor in a registry"
            raise ReplayError(msg)
        try:
            loaded = self._fallback.load_version(name, version)
        except SlipstreamError as exc:
            msg = f"model {name!r} version {version} is not in the slice, and the registry has none: {exc}"
            raise ReplayError(msg) from exc
        self.sources[f"{name}/{version}"] = "registry"
        return loaded
