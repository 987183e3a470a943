"""Slipstream's stream processors: the online feature engine and its runtime, and the event simulators."""

if __name__ != "slipstream.streams":  # one name per module, never two
    _msg = "import slipstream.streams, not streams: Slipstream installs one package, slipstream"
    raise ImportError(_msg)
