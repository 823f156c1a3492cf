"""The write-ahead log of insert batches (table ``ingest_ledger``; see streams/batcher.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


class Ledger:
    """Records a batch's offsets before its insert, and finds them again after a restart."""

    def __init__(self, client: Any, database: str, topic: str, topic_id: str) -> None:
        self._client = client
        self._table = f"{database}.ingest_ledger"
        self._topic = topic
        self._topic_id = topic_id

    def open_intents(self, partition: int, from_offset: int) -> list[tuple[int, int]]:
        result = self._client.query(
            f"SELECT DISTINCT first_offset, last_offset FROM {self._table} "
            "WHERE topic = {topic:String} AND topic_id = {topic_id:String} AND partition = {partition:Int32} "
            "AND last_offset >= {offset:Int64} ORDER BY first_offset",
            parameters={"topic": self._topic, "topic_id": self._topic_id, "partition": partition, "offset": from_offset},
        )
        return [(int(first), int(last)) for first, last in result.result_rows]

    def record(self, partition: int, first_offset: int, last_offset: int, token: str) -> None:
        self._client.insert(
            self._table,
            [[self._topic, self._topic_id, partition, first_offset, last_offset, token, datetime.now(timezone.utc)]],
            column_names=["topic", "topic_id", "partition", "first_offset", "last_offset", "token", "created_at"],
            settings={"insert_deduplication_token": f"ledger:{token}", "async_insert": 0},
        )
