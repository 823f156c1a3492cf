"""Writes every alert state change to the ClickHouse ``alerts`` table (sql/migrations/0005).

One insert per state change, with ``insert_deduplication_token`` = dedup_key/state/at: the same
change written twice (a retry, a worker that re-evaluates a minute after a restart) is stored
once. Also reads back what is firing, so a fresh worker knows its open incidents.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from spanline.alerts.events import AlertEvent
from spanline.sql.statements import render_statement
from spanline.sql.templates import identifier

COLUMNS = [
    "at",
    "recorded_at",
    "rule",
    "severity",
    "state",
    "dedup_key",
    "tenant_id",
    "scope",
    "value",
    "threshold",
    "summary",
    "runbook",
    "runbook_branch",
    "diagnosis",
    "example_trace_ids",
]


def dedup_token(event: AlertEvent) -> str:
    return f"alert:{event.dedup_key}:{event.state}:{event.at.isoformat()}"


def _finite(value: float) -> float:
    return value if value == value and abs(value) != float("inf") else 0.0


class AlertHistory:
    """The ``alerts`` table of ``database`` through a clickhouse-connect client."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._table = f"{identifier(database)}.alerts"
        self._open_incidents = render_statement("alerts_open_incidents", database=database)

    def write(self, events: list[AlertEvent]) -> None:
        """One deduplicated insert per event (a token covers one block, so one event per block)."""
        for event in events:
            row = [
                event.at,
                datetime.now(UTC),
                event.rule,
                event.severity,
                event.state,
                event.dedup_key,
                event.tenant_id,
                event.scope,
                _finite(event.value),
                _finite(event.threshold),
                event.summary,
                event.runbook,
                event.runbook_branch,
                json.dumps(event.diagnosis, sort_keys=True, default=str),
                list(event.example_trace_ids),
            ]
            self._client.insert(
                self._table,
                [row],
                column_names=COLUMNS,
                settings={"insert_deduplication_token": dedup_token(event), "async_insert": 0},
            )

    def open_incidents(self) -> list[dict[str, object]]:
        """The last firing row of every alert whose last recorded state is firing (column -> value).

        A worker that starts without a state file (another machine took over the ``metrics``
        partition) adopts these, so it resolves them later instead of forgetting them.
        """
        result = self._client.query(self._open_incidents)
        return [
            {name.rstrip("_"): value for name, value in zip(result.column_names, row, strict=False)}
            for row in result.result_rows
        ]
