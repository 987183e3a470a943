"""Event contracts: Avro schemas, serde, topic declarations and the typed Kafka clients that speak them."""
