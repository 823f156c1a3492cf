"""Fixtures shared by every test module; they live in tests/support and are only re-exported here."""

from tests.support.kafka_broker import apache_kafka, kafka_broker, tansu_kafka

__all__ = ["apache_kafka", "kafka_broker", "tansu_kafka"]
