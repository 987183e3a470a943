"""Slipstream's watchers of live models: shadow challengers, delayed-label outcomes and realised performance."""

if __name__ != "slipstream.monitoring":  # one name per module, never two
    _msg = "import slipstream.monitoring, not monitoring: Slipstream installs one package, slipstream"
    raise ImportError(_msg)
