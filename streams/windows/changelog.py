"""ClickHouse as the windows' changelog: ``metric_windows`` plus the raw ``spans`` rows.

No Faust tables (docs/architecture.md: tansu changelog recovery can stop one record short, and table
updates are refused inside ``take()`` batches). Every function takes the sink's client and runs
on the sink's thread. Rebuilding a partition that resumes at offset R:

1. its latest ``metric_windows`` row (this topic id) gives the frontier (minute + 1 min), the
   event-time high and ``through_offset``;
2. raw rows of this topic incarnation with offset < R (offsets >= R are redelivered and added
   live) whose minute is at or after the frontier are the open windows; rows after
   ``through_offset`` whose minute is closed were late: they go to ``late_spans`` and into the
   frontier minute, as they did live (the frontier only moves with a record); the high takes
   the rows after ``through_offset`` into account, the root high the roots of the open windows;
3. without a row yet, nothing was ever closed: the open windows are the rows from the
   watermark's minute on (a crash cannot leave older ones unemitted, since a window that
   closes is emitted before its batch is acked).

"This topic incarnation": ``spans`` rows carry the topic name, not its id; rows are taken
from the offsets the ingest ledger recorded under this topic id, ingested no earlier than
five minutes before its first batch was recorded (rows of an earlier incarnation with the
same name and offsets are older than that).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from clickhouse_connect.driver.client import Client

from spanline.sql.statements import render_statement
from spanline.streams.windows.state import PartitionWindows
from spanline.windows.aggregate import ROW_COLUMNS, aggregate, combine, epoch_ms, minute_of, restamp
from spanline.windows.records import WindowRecord

#: Margin between a row's ingested_at (stamped when processed) and its batch's ledger record.
INCARNATION_SLACK_S = 300


@dataclass(frozen=True)
class Changelog:
    database: str
    topic: str
    topic_id: str

    def record(self, client: Client, records: list[WindowRecord], payloads: list[bytes]) -> None:
        """Write one partition's emitted windows in one insert, deduplicated on retry: its token
        names the partition and its minute range, which a re-emission after a crash repeats."""
        now = datetime.now(UTC)
        rows = [
            [
                self.topic,
                self.topic_id,
                record.partition,
                datetime.fromtimestamp(record.minute, UTC),
                record.through_offset,
                _time(record.high_ms),
                _time(record.watermark_ms),
                record.late_spans,
                record.spans,
                payload.decode(),
                now,
            ]
            for record, payload in zip(records, payloads, strict=True)
        ]
        client.insert(
            f"{self.database}.metric_windows",
            rows,
            column_names=[
                "topic",
                "topic_id",
                "partition",
                "minute",
                "through_offset",
                "high",
                "watermark",
                "late_spans",
                "spans",
                "payload",
                "emitted_at",
            ],
            settings={"insert_deduplication_token": self.token(records), "async_insert": 0},
        )

    def token(self, records: list[WindowRecord]) -> str:
        first, last = records[0], records[-1]
        return f"window:{self.topic}:{self.topic_id}:{first.partition}:{first.minute}-{last.minute}"

    def rebuild(
        self, client: Client, partition: int, resume_offset: int, lateness_ms: int, grace_ms: int | None = None
    ) -> PartitionWindows:
        """The partition's window state as it was when offset ``resume_offset`` was next to process."""
        last = self._last_record(client, partition)
        frontier, high_ms, through = (None, None, -1) if last is None else last
        scope = self._scope(client, partition, resume_offset)
        if scope is None:  # nothing of this incarnation stored before the resume offset
            return PartitionWindows(
                partition,
                lateness_ms,
                grace_ms=grace_ms,
                frontier=frontier,
                high_ms=high_ms,
                replay_through=through,
                through_offset=resume_offset - 1,
            )
        newer = client.query(
            render_statement("changelog_newer_spans", database=self.database), parameters={**scope, "through": through}
        ).result_rows[0]
        if newer[1]:
            newest = int(epoch_ms(pd.Series([newer[0]]))[0])
            high_ms = newest if high_ms is None else max(high_ms, newest)
        if high_ms is None:
            return PartitionWindows(
                partition,
                lateness_ms,
                grace_ms=grace_ms,
                frontier=frontier,
                replay_through=through,
                through_offset=resume_offset - 1,
            )
        open_from = frontier if frontier is not None else int(minute_of(np.int64(high_ms - lateness_ms)))
        window_scope = {**scope, "open_from": datetime.fromtimestamp(open_from, UTC)}
        rows = client.query_df(
            render_statement("changelog_open_spans", database=self.database, columns=ROW_COLUMNS),
            parameters=window_scope,
        )
        parts = [aggregate(rows)] if len(rows) else []
        late = 0
        if frontier is not None:  # late rows not yet in a record: counted in the frontier minute
            late_rows = client.query_df(
                render_statement("changelog_late_rows", database=self.database, columns=ROW_COLUMNS),
                parameters={**scope, "through": through, "frontier": datetime.fromtimestamp(frontier, UTC)},
            )
            late = len(late_rows)
            if late:
                parts.append(restamp(aggregate(late_rows), frontier))
        return PartitionWindows(
            partition,
            lateness_ms,
            grace_ms=grace_ms,
            frontier=frontier,
            high_ms=high_ms,
            root_high_ms=self._root_high(client, window_scope),
            replay_through=through,
            through_offset=resume_offset - 1,
            late_spans=late,
            open_windows=combine(parts) if parts else None,
        )

    def _root_high(self, client: Client, window_scope: dict[str, Any]) -> int | None:
        """The newest trace root start from the open windows on (older roots cannot close a
        window that is still open, so they do not matter)."""
        newest, count = client.query(
            render_statement("changelog_root_high", database=self.database), parameters=window_scope
        ).result_rows[0]
        return int(epoch_ms(pd.Series([newest]))[0]) if count else None

    def _last_record(self, client: Client, partition: int) -> tuple[int, int, int] | None:
        rows = client.query(
            render_statement("changelog_last_window", database=self.database),
            parameters={"topic": self.topic, "topic_id": self.topic_id, "partition": partition},
        ).result_rows
        if not rows:
            return None
        minute, through, high = rows[0]
        return int(minute) + 60, int(high), int(through)

    def _scope(self, client: Client, partition: int, resume_offset: int) -> dict[str, Any] | None:
        """Parameters of the ``changelog_*_spans`` statements' condition (sql/statements/) that
        selects this incarnation's rows of the partition below the resume offset."""
        first = client.query(
            render_statement("changelog_first_batch", database=self.database),
            parameters={
                "topic": self.topic,
                "topic_id": self.topic_id,
                "partition": partition,
                "resume": resume_offset,
            },
        ).result_rows[0]
        if not first[2]:
            return None
        since = pd.Timestamp(first[1]).tz_localize(None) if pd.Timestamp(first[1]).tzinfo else pd.Timestamp(first[1])
        return {
            "topic": self.topic,
            "partition": partition,
            "first": int(first[0]),
            "resume": resume_offset,
            "since": since.to_pydatetime().replace(tzinfo=UTC),
            "slack": INCARNATION_SLACK_S,
        }


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
