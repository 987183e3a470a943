"""Training on the offline features, LightGBM -> ONNX behind a parity gate, and the MLflow registry."""

if __name__ != "slipstream.models":  # one name per module, never two
    _msg = "import slipstream.models, not models: Slipstream installs one package, slipstream"
    raise ImportError(_msg)
