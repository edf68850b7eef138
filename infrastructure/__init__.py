"""Adapters to the outside: settings, PostgreSQL, Kafka, key store and friends."""
