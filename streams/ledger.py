"""The write-ahead log of insert batches (table ``ingest_ledger``; see streams/batcher.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from spanline.sql.statements import render_statement


class Ledger:
    """Records a batch's offsets before its insert, and finds them again after a restart."""

    def __init__(self, client: Client, database: str, topic: str, topic_id: str) -> None:
        self._client = client
        self._table = f"{database}.ingest_ledger"
        self._open_intents = render_statement("ledger_open_intents", database=database)
        self._topic = topic
        self._topic_id = topic_id

    def open_intents(self, partition: int, from_offset: int) -> list[tuple[int, int]]:
        result = self._client.query(
            self._open_intents,
            parameters={
                "topic": self._topic,
                "topic_id": self._topic_id,
                "partition": partition,
                "offset": from_offset,
            },
        )
        return [(int(first), int(last)) for first, last in result.result_rows]

    def record(self, partition: int, first_offset: int, last_offset: int, token: str) -> None:
        self._client.insert(
            self._table,
            [[self._topic, self._topic_id, partition, first_offset, last_offset, token, datetime.now(UTC)]],
            column_names=["topic", "topic_id", "partition", "first_offset", "last_offset", "token", "created_at"],
            settings={"insert_deduplication_token": f"ledger:{token}", "async_insert": 0},
        )
