"""Test support: real brokers, processes and helpers shared by the test modules."""
