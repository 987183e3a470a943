"""The models package's branch of Slipstream's exception tree.

::

    SlipstreamError                     (schemas.exceptions)
    └── ModelError                      (models)  a model cannot be trained, evaluated or applied
        ├── InvalidInputError           a frame lacks columns, is empty or a value is out of its domain
        │   └── MissingFeaturesError    a frame to score lacks some of the model's features
        ├── UnknownOptionError          an option (protocol, label delay) names no known variant
        ├── OnnxExportError             a booster cannot be converted to ONNX
        ├── ParityError                 ONNX and LightGBM disagree beyond the tolerance (max diff and row named),
        │                               also against a model card's parity sample, or the card has none
        └── RegistryError               the model registry refused or lost something
            ├── ArtifactCorruptError    an artifact's sha256 is not the registered one
            └── FeatureMismatchError    a model's features differ from the definitions (differences named)

Messages quote the bad value, so a log line alone says what to fix.
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class ModelError(SlipstreamError):
    """Root of the errors raised by ``models``."""


class InvalidInputError(ModelError):
    """A frame given to ``models`` lacks columns, is empty, or holds a value out of its domain."""


class MissingFeaturesError(InvalidInputError):
    """A frame to score lacks some of the model's features (named in the message)."""


class UnknownOptionError(ModelError):
    """An option such as ``protocol`` or ``label_delay`` names no known variant."""


__all__ = ["InvalidInputError", "MissingFeaturesError", "ModelError", "UnknownOptionError"]


# --- registry and ONNX export (models.onnx_export, models.registry) ---


class OnnxExportError(ModelError):
    """A booster cannot be converted to ONNX (or the converted graph does not match the booster's trees)."""


class ParityError(ModelError):
    """The ONNX artifact's predictions differ from LightGBM's by more than the tolerance (row and diff named).

    Raised by the registration gate and by ``LoadedModel.check_parity`` (which also names the model and version,
    and refuses a card without a parity sample)."""


class RegistryError(ModelError):
    """The model registry has no such model, version or alias, or refuses the change (the value is named)."""


class ArtifactCorruptError(RegistryError):
    """A model artifact's sha256 does not match the checksum recorded at registration (both named)."""


class FeatureMismatchError(RegistryError):
    """A model's feature list differs from the one the caller expects (the differences are named)."""


__all__ += ["ArtifactCorruptError", "FeatureMismatchError", "OnnxExportError", "ParityError", "RegistryError"]
