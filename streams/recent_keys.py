"""Reloading a partition's recent span keys from ClickHouse when the worker (re)starts it.

Re-send detection (streams/resends.py) must see, after a restart at offset R, exactly the keys
the partition stored below R within the window: the ``spans`` rows of the partition with
``kafka_offset < R`` whose message time is within the window of the newest such row.
"""

from __future__ import annotations

import numpy as np
from clickhouse_connect.driver.client import Client

from spanline.sql.statements import render_statement
from spanline.streams.resends import CLOCK_SLACK_MS, RecentSpans, span_keys


class RecentKeys:
    def __init__(self, database: str, topic: str) -> None:
        self._newest = render_statement("recent_keys_newest", database=database)
        self._since = render_statement("recent_keys_since", database=database)
        self._topic = topic

    def load(self, client: Client, partition: int, resume_offset: int, recent: RecentSpans) -> None:
        """Fill ``recent`` with the keys ``partition`` stored below ``resume_offset``."""
        parameters = {"topic": self._topic, "partition": partition, "resume": resume_offset}
        newest = client.query(self._newest, parameters=parameters).result_rows[0]
        if not newest[1]:
            return
        since_ms = int(newest[0]) - recent.window_ms - CLOCK_SLACK_MS
        columns = client.query(self._since, parameters={**parameters, "since": since_ms}).result_columns
        if columns and len(columns[0]):
            recent.add(span_keys(columns[0], columns[1], columns[2]), np.asarray(columns[3], dtype=np.int64))
