"""The session's Kafka-protocol broker takes and gives back records (kafka-python)."""

from __future__ import annotations

import uuid

from kafka import KafkaConsumer, KafkaProducer


def test_broker_round_trips_a_record(kafka_bootstrap: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    producer.send(topic, key=b"k", value=b"hello").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15000,
    )
    values = []
    for record in consumer:  # ends after 15 s without records, or at the first one
        values.append(record.value)
        break
    consumer.close()
    assert values == [b"hello"]
