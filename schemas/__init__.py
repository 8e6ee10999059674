"""Published message models: Avro schemas with examples, the model catalogue and the event codec."""
