"""Bounded, exactly-once drains of Kafka topics into the lake."""
