"""LightGBM -> ONNX with a parity gate: the artifact a scorer loads must give LightGBM's probabilities.

Float32 vs double: onnxmltools writes a ``FloatTensorType`` input and float32 split thresholds, while LightGBM
compares double features with double thresholds. A feature within one float32 ulp of a threshold then takes the
other branch (measured: probabilities off by up to 0.66 on rows placed just above thresholds). The converter in
onnxmltools 1.16 refuses ``DoubleTensorType``, so :func:`export_onnx` rewrites the converted graph: double input,
``ai.onnx.ml`` opset 3 and ``nodes_values_as_tensor`` holding the booster's exact double thresholds, matched node
by node by walking both trees. Only the leaf values stay float32 (a ~1e-7 effect on probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from models.exceptions import InvalidInputError, OnnxExportError, ParityError

PARITY_TOL = 1e-5
TARGET_OPSET = 15  # the highest default-domain opset the onnxmltools 1.16 LightGBM converter supports
ML_OPSET_DOUBLE = 3  # ai.onnx.ml 3 adds the *_as_tensor (double) tree attributes
INPUT_NAME = "input"
PROBABILITIES = "probabilities"

F64 = npt.NDArray[np.float64]


def trimmed(booster: lgb.Booster) -> lgb.Booster:
    """The booster cut at its best iteration (what ``predict`` uses by default), so every artifact agrees."""
    return lgb.Booster(model_str=booster.model_to_string())


def export_onnx(booster: lgb.Booster, feature_names: Sequence[str], *, double: bool = True) -> bytes:
    """Convert a binary LightGBM booster to ONNX; output ``probabilities`` is an (n, 2) tensor, no ZipMap.

    ``double=True`` (default) gives a double-input graph with exact thresholds; ``False`` the plain float32 one.
    """
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    names = list(feature_names)
    if booster.num_feature() != len(names):
        msg = f"booster reads {booster.num_feature()} features but {len(names)} feature names were given: {names}"
        raise OnnxExportError(msg)
    booster = trimmed(booster)
    try:
        model = convert_lightgbm(
            booster,
            name="slipstream",
            initial_types=[(INPUT_NAME, FloatTensorType([None, len(names)]))],
            zipmap=False,
            target_opset=TARGET_OPSET,
        )
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        msg = f"onnxmltools cannot convert the booster: {exc}"
        raise OnnxExportError(msg) from exc
    if double:
        _to_double(model, booster)
    model.doc_string = "features: " + ",".join(names)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _to_double(model: onnx.ModelProto, booster: lgb.Booster) -> None:
    nodes = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(nodes) != 1:
        msg = f"expected one TreeEnsembleClassifier in the converted graph, found {[n.op_type for n in nodes]}"
        raise OnnxExportError(msg)
    node = nodes[0]
    attrs = {a.name: a for a in node.attribute}
    pairs = zip(attrs["nodes_treeids"].ints, attrs["nodes_nodeids"].ints, strict=True)
    index = {(t, n): i for i, (t, n) in enumerate(pairs)}
    true_ids, false_ids = list(attrs["nodes_truenodeids"].ints), list(attrs["nodes_falsenodeids"].ints)
    features, values = list(attrs["nodes_featureids"].ints), list(attrs["nodes_values"].floats)
    exact = np.asarray(values, dtype=np.float64)
    for tree_no, info in enumerate(booster.dump_model()["tree_info"]):
        stack: list[tuple[dict[str, Any], int]] = [(info["tree_structure"], 0)]
        while stack:
            dumped, onnx_id = stack.pop()
            if "split_index" not in dumped:
                continue
            i = index.get((tree_no, onnx_id))
            threshold = float(dumped["threshold"]) if dumped.get("decision_type") == "<=" else None
            if i is None or threshold is None or features[i] != dumped["split_feature"]:
                msg = f"tree {tree_no} node {onnx_id}: graph and booster disagree (categorical split?): {dumped!r:.200}"
                raise OnnxExportError(msg)
            if np.float32(threshold) != np.float32(values[i]):
                msg = f"tree {tree_no} node {onnx_id}: threshold {threshold!r} but the graph holds {values[i]!r}"
                raise OnnxExportError(msg)
            exact[i] = threshold
            stack.append((dumped["left_child"], true_ids[i]))
            stack.append((dumped["right_child"], false_ids[i]))
    node.attribute.remove(attrs["nodes_values"])
    node.attribute.append(helper.make_attribute("nodes_values_as_tensor", numpy_helper.from_array(exact)))
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    for opset in model.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, ML_OPSET_DOUBLE)


class OnnxScorer:
    """One ONNX Runtime session, single-threaded and sequential (predictable latency, deterministic sums)."""

    def __init__(self, onnx_bytes: bytes) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # the converter's label output has a static shape ORT warns about
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        model_input = self.session.get_inputs()[0]
        self.input_name: str = model_input.name
        self.n_features: int = int(model_input.shape[1])
        self.dtype: type[np.floating[Any]] = np.float64 if model_input.type == "tensor(double)" else np.float32

    def predict(self, x: npt.ArrayLike) -> F64:
        """Probability of class 1 for each row of ``x`` (shape (n, n_features))."""
        matrix = np.asarray(x, dtype=self.dtype)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            msg = f"expected rows of {self.n_features} features, got an array of shape {matrix.shape}"
            raise InvalidInputError(msg)
        (probabilities,) = self.session.run([PROBABILITIES], {self.input_name: matrix})
        return np.asarray(probabilities, dtype=np.float64)[:, 1]


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    worst_row: int
    n: int
    tol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tol


def parity_check(
    booster: lgb.Booster, onnx_bytes: bytes, x_sample: npt.ArrayLike, tol: float = PARITY_TOL
) -> ParityReport:
    """Compare ONNX and LightGBM probabilities on ``x_sample`` (LightGBM reads it in double)."""
    matrix = np.asarray(x_sample, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != booster.num_feature():
        msg = f"the parity sample has shape {matrix.shape}; the model takes {booster.num_feature()} features per row"
        raise ParityError(msg)
    expected = np.asarray(booster.predict(matrix), dtype=np.float64)
    diff = np.abs(OnnxScorer(onnx_bytes).predict(matrix) - expected)
    if diff.size == 0:
        return ParityReport(0.0, -1, 0, tol)
    worst = int(np.argmax(diff))
    return ParityReport(float(diff[worst]), worst, int(diff.size), tol)


def ensure_parity(
    booster: lgb.Booster, onnx_bytes: bytes, x_sample: npt.ArrayLike, tol: float = PARITY_TOL
) -> ParityReport:
    """:func:`parity_check`, raising :class:`ParityError` with the worst row when it fails."""
    report = parity_check(booster, onnx_bytes, x_sample, tol)
    if report.n == 0:
        msg = "parity sample is empty: nothing to compare ONNX and LightGBM on"
        raise ParityError(msg)
    if not report.passed:
        msg = (
            f"ONNX and LightGBM disagree: max |p_onnx - p_lightgbm| = {report.max_abs_diff:.3g} at row "
            f"{report.worst_row} of {report.n} (tolerance {tol:g})"
        )
        raise ParityError(msg)
    return report
