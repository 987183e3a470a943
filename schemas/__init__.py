"""Event contracts: Avro schemas, serde, topic declarations and the typed Kafka clients that speak them."""

if __name__ != "slipstream.schemas":  # one name per module, never two
    _msg = "import slipstream.schemas, not schemas: Slipstream installs one package, slipstream"
    raise ImportError(_msg)
