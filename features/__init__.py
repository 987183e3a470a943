"""The feature language, its exact event-time window core, the offline engine and the Feast/Redis layout."""

if __name__ != "slipstream.features":  # one name per module, never two
    _msg = "import slipstream.features, not features: Slipstream installs one package, slipstream"
    raise ImportError(_msg)
