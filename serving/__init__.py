"""The scorer: exact features from the online store, ONNX models in hot-swappable slots, HTTP and Kafka."""

if __name__ != "slipstream.serving":  # one name per module, never two
    _msg = "import slipstream.serving, not serving: Slipstream installs one package, slipstream"
    raise ImportError(_msg)
