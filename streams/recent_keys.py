"""Reloading a partition's recent span keys from ClickHouse when the worker (re)starts it.

Re-send detection (streams/resends.py) must see, after a restart at offset R, exactly the keys
the partition stored below R within the window: the ``spans`` rows of the partition with
``kafka_offset < R`` whose message time is within the window of the newest such row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spanline.streams.resends import CLOCK_SLACK_MS, RecentSpans, span_keys


class RecentKeys:
    def __init__(self, database: str, topic: str) -> None:
        self._table = f"{database}.spans"
        self._topic = topic

    def load(self, client: Any, partition: int, resume_offset: int, recent: RecentSpans) -> None:
        """Fill ``recent`` with the keys ``partition`` stored below ``resume_offset``."""
        scope = ("kafka_topic = {topic:String} AND kafka_partition = {partition:Int32} "
                 "AND kafka_offset < {resume:Int64}")
        parameters = {"topic": self._topic, "partition": partition, "resume": resume_offset}
        newest = client.query(
            f"SELECT toUnixTimestamp64Milli(max(kafka_timestamp)), count() FROM {self._table} WHERE {scope}",
            parameters=parameters,
        ).result_rows[0]
        if not newest[1]:
            return
        since_ms = int(newest[0]) - recent.window_ms - CLOCK_SLACK_MS
        columns = client.query(
            f"SELECT tenant_id, trace_id, span_id, toUnixTimestamp64Milli(kafka_timestamp) FROM {self._table} "
            f"WHERE {scope} AND kafka_timestamp >= fromUnixTimestamp64Milli({{since:Int64}}, 'UTC') "
            "ORDER BY kafka_offset",
            parameters={**parameters, "since": since_ms},
        ).result_columns
        if columns and len(columns[0]):
            recent.add(span_keys(columns[0], columns[1], columns[2]), np.asarray(columns[3], dtype=np.int64))
