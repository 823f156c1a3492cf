"""Spans as the worker stores them, for tests that query ClickHouse without running the pipeline."""

from __future__ import annotations

import orjson
import pandas as pd

from spanline.simulator.workload import WorkloadConfig, generate_traces
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch


def worker_rows(config: WorkloadConfig) -> pd.DataFrame:
    """The ``spans`` rows for this workload: one Kafka message per generator chunk, all in one
    batch through the worker's own transformation (decode, validate, derive, price); a copy the
    caller may edit. Fails if any span would be dead-lettered."""
    chunks = [chunk for chunk in generate_traces(config) if chunk]
    messages = [Message(0, offset, orjson.dumps(chunk), "test") for offset, chunk in enumerate(chunks)]
    result = process_batch(Batch(0, 0, len(messages) - 1, messages, False), "spans", PriceCatalog.load())
    assert result.rows is not None and not result.dead_letters
    return result.rows.copy()
