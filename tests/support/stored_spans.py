"""Span rows stored as the worker stores them: the raw insert, then its minute rollup."""

from __future__ import annotations

import pandas as pd
from clickhouse_connect.driver.client import Client

from spanline.streams.rollup import TOKEN_SUFFIX, minute_rollup
from spanline.streams.sinks import DEDUP_SETTINGS


def store_spans(client: Client, database: str, rows: pd.DataFrame, token: str) -> None:
    """Insert ``rows`` into ``spans`` and their minute rollup into ``spans_minute`` with the
    worker's settings and tokens (streams/sinks.py), so the hour and day rollups follow."""
    client.insert_df(f"{database}.spans", rows, settings={**DEDUP_SETTINGS, "insert_deduplication_token": token})
    insert_rollup(client, database, rows, token)


def insert_rollup(client: Client, database: str, rows: pd.DataFrame, token: str) -> None:
    """The minute rollup of rows whose raw insert had ``token``."""
    client.insert_arrow(
        f"{database}.spans_minute",
        minute_rollup(rows).table,
        settings={**DEDUP_SETTINGS, "insert_deduplication_token": token + TOKEN_SUFFIX},
    )
