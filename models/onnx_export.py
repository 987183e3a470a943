"""LightGBM -> ONNX with a parity gate: the artifact a scorer loads must give LightGBM's own predictions.

Two kinds of booster (:func:`model_kind`): ``binary`` (objective ``binary``) becomes a ``TreeEnsembleClassifier``
whose ``probabilities`` output is (n, 2), no ZipMap; ``ranking`` (``lambdarank``, ``rank_xendcg``) a
``TreeEnsembleRegressor`` whose ``variable`` output is the raw score, (n, 1). :class:`OnnxScorer` tells them apart
by the graph's outputs and returns the class-1 probability or the raw score, as ``booster.predict`` does.

Float32 vs double: onnxmltools writes a ``FloatTensorType`` input and float32 split thresholds, while LightGBM
compares double features with double thresholds. A feature within one float32 ulp of a threshold then takes the
other branch (measured: probabilities off by up to 0.66 on rows placed just above thresholds). The converter in
onnxmltools 1.16 refuses ``DoubleTensorType``, so :func:`export_onnx` rewrites the converted graph: double input,
``ai.onnx.ml`` opset 3 and ``nodes_values_as_tensor`` holding the booster's exact double thresholds, matched node
by node by walking both trees. A classifier's leaf values stay float32 (a ~1e-7 effect on probabilities). A
ranker's score is the unsquashed sum of its leaves, so the regressor also gets ``target_weights_as_tensor``, the
exact double leaf values: ONNX Runtime sums in double and only rounds the total to its float32 output (relative
6e-8, ~1e-7 on scores of a few units).

A registered model carries a *parity sample* (:func:`parity_sample`): up to :data:`PARITY_ROWS` rows with
LightGBM's predictions for them, so whoever loads the artifact can re-check it without LightGBM
(:func:`check_parity_sample`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:  # LightGBM loads only where a booster is exported, never to score an ONNX model
    import lightgbm as lgb

from slipstream.models.exceptions import InvalidInputError, OnnxExportError, ParityError

PARITY_TOL = 1e-5
PARITY_ROWS = 64  # rows of the parity sample stored in a model card
TARGET_OPSET = 15  # the highest default-domain opset the onnxmltools 1.16 LightGBM converter supports
ML_OPSET_DOUBLE = 3  # ai.onnx.ml 3 adds the *_as_tensor (double) tree attributes
INPUT_NAME = "input"
PROBABILITIES = "probabilities"  # classifier output, (n, 2)
RAW_SCORE = "variable"  # regressor output (onnxmltools' name), (n, 1)

ModelKind = Literal["binary", "ranking"]
F64 = npt.NDArray[np.float64]

OBJECTIVES: Mapping[str, ModelKind] = {"binary": "binary", "lambdarank": "ranking", "rank_xendcg": "ranking"}
_TREE_OPS: Mapping[ModelKind, str] = {"binary": "TreeEnsembleClassifier", "ranking": "TreeEnsembleRegressor"}


def trimmed(booster: lgb.Booster) -> lgb.Booster:
    """The booster cut at its best iteration (what ``predict`` uses by default), so every artifact agrees."""
    import lightgbm as lgb

    return lgb.Booster(model_str=booster.model_to_string())


def model_kind(booster: lgb.Booster) -> ModelKind:
    """``binary`` or ``ranking``, from the booster's objective; :class:`OnnxExportError` for any other."""
    return _kind(booster.dump_model(num_iteration=1))


def _kind(dumped: Mapping[str, Any]) -> ModelKind:
    objective = str(dumped.get("objective", "")).split(" ")[0]
    kind = OBJECTIVES.get(objective)
    if kind is None or int(dumped.get("num_class", 1)) != 1:
        msg = (
            f"cannot export a booster with objective {dumped.get('objective')!r} and num_class "
            f"{dumped.get('num_class')!r}: Slipstream serves {sorted(OBJECTIVES)} (one output)"
        )
        raise OnnxExportError(msg)
    return kind


def export_onnx(booster: lgb.Booster, feature_names: Sequence[str], *, double: bool = True) -> bytes:
    """Convert a binary or ranking LightGBM booster to ONNX (outputs in the module docstring).

    ``double=True`` (default) gives a double-input graph with exact thresholds; ``False`` the plain float32 one.
    """
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    names = list(feature_names)
    if booster.num_feature() != len(names):
        msg = f"booster reads {booster.num_feature()} features but {len(names)} feature names were given: {names}"
        raise OnnxExportError(msg)
    booster = trimmed(booster)
    dumped = booster.dump_model()
    kind = _kind(dumped)
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
        _to_double(model, dumped, kind)
    model.doc_string = "features: " + ",".join(names)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _to_double(model: onnx.ModelProto, dumped: Mapping[str, Any], kind: ModelKind) -> None:
    op_type = _TREE_OPS[kind]
    nodes = [n for n in model.graph.node if n.op_type.startswith("TreeEnsemble")]
    if len(nodes) != 1 or nodes[0].op_type != op_type:
        msg = f"expected one {op_type} in the converted graph, found {[n.op_type for n in nodes]}"
        raise OnnxExportError(msg)
    node = nodes[0]
    attrs = {a.name: a for a in node.attribute}
    pairs = zip(attrs["nodes_treeids"].ints, attrs["nodes_nodeids"].ints, strict=True)
    index = {(t, n): i for i, (t, n) in enumerate(pairs)}
    true_ids, false_ids = list(attrs["nodes_truenodeids"].ints), list(attrs["nodes_falsenodeids"].ints)
    features, values = list(attrs["nodes_featureids"].ints), list(attrs["nodes_values"].floats)
    exact = np.asarray(values, dtype=np.float64)
    leaves: dict[tuple[int, int], float] = {}
    for tree_no, info in enumerate(dumped["tree_info"]):
        stack: list[tuple[dict[str, Any], int]] = [(info["tree_structure"], 0)]
        while stack:
            part, onnx_id = stack.pop()
            if "split_index" not in part:
                leaves[(tree_no, onnx_id)] = float(part["leaf_value"])
                continue
            i = index.get((tree_no, onnx_id))
            threshold = float(part["threshold"]) if part.get("decision_type") == "<=" else None
            if i is None or threshold is None or features[i] != part["split_feature"]:
                msg = f"tree {tree_no} node {onnx_id}: graph and booster disagree (categorical split?): {part!r:.160}"
                raise OnnxExportError(msg)
            if np.float32(threshold) != np.float32(values[i]):
                msg = f"tree {tree_no} node {onnx_id}: threshold {threshold!r} but the graph holds {values[i]!r}"
                raise OnnxExportError(msg)
            exact[i] = threshold
            stack.append((part["left_child"], true_ids[i]))
            stack.append((part["right_child"], false_ids[i]))
    _replace(node, attrs["nodes_values"], "nodes_values_as_tensor", exact)
    if kind == "ranking":
        _replace(node, attrs["target_weights"], "target_weights_as_tensor", _exact_leaves(attrs, leaves))
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    for opset in model.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, ML_OPSET_DOUBLE)


def _exact_leaves(attrs: Mapping[str, onnx.AttributeProto], leaves: Mapping[tuple[int, int], float]) -> F64:
    """The regressor's ``target_weights`` as the booster's double leaf values, matched by (tree, node)."""
    trees, nodes = attrs["target_treeids"].ints, attrs["target_nodeids"].ints
    weights = list(attrs["target_weights"].floats)
    exact = np.empty(len(weights), dtype=np.float64)
    for j, (tree_no, onnx_id, weight) in enumerate(zip(trees, nodes, weights, strict=True)):
        leaf = leaves.get((tree_no, onnx_id))
        if leaf is None or np.float32(leaf) != np.float32(weight):
            msg = f"tree {tree_no} leaf {onnx_id}: the graph holds {weight!r} but the booster {leaf!r}"
            raise OnnxExportError(msg)
        exact[j] = leaf
    return exact


def _replace(node: onnx.NodeProto, old: onnx.AttributeProto, name: str, values: F64) -> None:
    node.attribute.remove(old)
    node.attribute.append(helper.make_attribute(name, numpy_helper.from_array(values)))


class OnnxScorer:
    """One ONNX Runtime session, single-threaded and sequential (predictable latency, deterministic sums).

    ``output`` is ``probability`` for a classifier graph (``probabilities`` output) and ``raw_score`` for a
    regressor graph (``variable`` output); :meth:`predict` returns that, one float per row.
    """

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
        outputs = [o.name for o in self.session.get_outputs()]
        self.output: Literal["probability", "raw_score"]
        if PROBABILITIES in outputs:
            self.output, self._output_name = "probability", PROBABILITIES
        elif RAW_SCORE in outputs:
            self.output, self._output_name = "raw_score", RAW_SCORE
        else:
            msg = f"the ONNX graph has neither a {PROBABILITIES!r} nor a {RAW_SCORE!r} output: {outputs}"
            raise OnnxExportError(msg)

    def predict(self, x: npt.ArrayLike) -> F64:
        """Class-1 probability (classifier) or raw score (regressor) for each row of ``x`` (n, n_features)."""
        matrix = np.asarray(x, dtype=self.dtype)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            msg = f"expected rows of {self.n_features} features, got an array of shape {matrix.shape}"
            raise InvalidInputError(msg)
        (result,) = self.session.run([self._output_name], {self.input_name: matrix})
        values = np.asarray(result, dtype=np.float64)
        return values[:, 1] if self.output == "probability" else values.reshape(len(matrix))


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    worst_row: int
    n: int
    tol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tol


def _report(actual: F64, expected: F64, tol: float) -> ParityReport:
    diff = np.abs(actual - expected)
    if diff.size == 0:
        return ParityReport(0.0, -1, 0, tol)
    diff = np.where(np.isfinite(diff), diff, np.inf)  # a NaN anywhere is a failure, not a silent pass
    worst = int(np.argmax(diff))
    return ParityReport(float(diff[worst]), worst, int(diff.size), tol)


def parity_check(
    booster: lgb.Booster, onnx_bytes: bytes, x_sample: npt.ArrayLike, tol: float = PARITY_TOL
) -> ParityReport:
    """Compare ONNX and LightGBM predictions on ``x_sample`` (LightGBM reads it in double)."""
    matrix = np.asarray(x_sample, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != booster.num_feature():
        msg = f"the parity sample has shape {matrix.shape}; the model takes {booster.num_feature()} features per row"
        raise ParityError(msg)
    expected = np.asarray(booster.predict(matrix), dtype=np.float64)
    return _report(OnnxScorer(onnx_bytes).predict(matrix), expected, tol)


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


# --- the parity sample a model card carries ---


def parity_sample(booster: lgb.Booster, x_sample: npt.ArrayLike, rows: int = PARITY_ROWS) -> dict[str, Any]:
    """``{"x": [[...], ...], "expected": [...]}``: ``rows`` evenly spaced rows of ``x_sample`` (all of them when
    fewer; first and last included) and ``booster.predict`` on them in double (probability or raw score).

    Plain lists of Python floats, so JSON keeps every bit (``repr`` round-trips a double).
    """
    matrix = np.asarray(x_sample, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] != booster.num_feature():
        msg = f"a parity sample needs (n>0, {booster.num_feature()}) rows, got shape {matrix.shape}"
        raise ParityError(msg)
    if rows < 1:
        msg = f"a parity sample needs at least one row, got rows={rows!r}"
        raise ParityError(msg)
    chosen = np.unique(np.linspace(0, matrix.shape[0] - 1, min(rows, matrix.shape[0])).round().astype(np.int64))
    x = matrix[chosen]
    expected = np.asarray(booster.predict(x), dtype=np.float64)
    return {"x": x.tolist(), "expected": expected.tolist()}


def check_parity_sample(
    scorer: OnnxScorer, sample: Mapping[str, Any] | None, what: str, tol: float = PARITY_TOL
) -> ParityReport:
    """Score ``sample["x"]`` with ``scorer`` and compare with ``sample["expected"]``; :class:`ParityError` naming
    ``what`` (model and version), the worst row, both values, the difference and ``tol`` unless every row agrees.
    """
    if not sample or "x" not in sample or "expected" not in sample:
        msg = f"{what} has no parity sample in its model card: it cannot be checked before serving (re-register it)"
        raise ParityError(msg)
    x = np.asarray(sample["x"], dtype=np.float64)
    expected = np.asarray(sample["expected"], dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or expected.shape != (x.shape[0],):
        msg = f"{what}: malformed parity sample, x of shape {x.shape} and expected of shape {expected.shape}"
        raise ParityError(msg)
    try:
        actual = scorer.predict(x)
    except InvalidInputError as exc:
        msg = f"{what}: the ONNX model cannot score its own parity sample: {exc}"
        raise ParityError(msg) from exc
    report = _report(actual, expected, tol)
    if not report.passed:
        row = report.worst_row
        msg = (
            f"{what} fails its parity check: at row {row} of {report.n} ONNX gives {actual[row]!r} where LightGBM "
            f"gave {expected[row]!r} at registration, |diff| = {report.max_abs_diff:.3g} > tolerance {tol:g}"
        )
        raise ParityError(msg)
    return report
