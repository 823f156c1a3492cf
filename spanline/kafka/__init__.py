"""Kafka plumbing every stage shares: topic administration, the span publisher and the
embedded tansu broker."""
