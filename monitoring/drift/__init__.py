"""Drift of a live model against the reference stored with its version: per-window distribution tests calibrated on
the training period (:mod:`.calibration`), change detectors on realised error and shadow flips (:mod:`.detectors`),
and the per-version state machine the ``slipstream drift`` processor feeds (:mod:`.monitor`). See docs/drift.md."""

from slipstream.monitoring.drift.monitor import DriftMonitor, DriftSettings

__all__ = ["DriftMonitor", "DriftSettings"]
