"""Fill a fresh evaluator's baselines from the ClickHouse rollups (first start, lost state file).

The rollups carry the stream's columns (spanline/windows/aggregate.py), so the evaluator's own metric code turns
their rows into baselines: ``spans_hour`` gives the closed hours of the retention (8 days),
``spans_minute`` the minutes of the current hour (evaluated) and of the 140 minutes before it
(kept for diagnoses and the significance tests' noise references: a page compares its window
with the hour before the incident, which a fresh worker has not seen). Percentile metrics read their hourly quantile
from the rollup sketches (quantilesDDMerge; µs columns divided back to ms). Only columns the
table has are read, so an older schema still bootstraps what it can.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from clickhouse_connect.driver.client import Client

from spanline.alerts.baselines import Family
from spanline.alerts.conditions import family_of
from spanline.alerts.evaluator import DIAGNOSIS_MINUTES, Evaluator
from spanline.alerts.metrics import METRICS
from spanline.sql.statements import identifier_list, statement
from spanline.sql.templates import identifier, render

log = logging.getLogger(__name__)
DIMENSIONS = ["tenant_id", "service", "feature", "provider", "model_requested", "route", "kind"]
#: Stream sketch column -> (rollup column, divisor back to the stream's unit).
SKETCH_COLUMNS = {
    "ttft_ms_sketch": ("ttft_us_sketch", 1000.0),
    "duration_ms_sketch": ("duration_us_sketch", 1000.0),
    "tpot_ms_sketch": ("tpot_us_sketch", 1000.0),
    "input_tokens_sketch": ("input_tokens_sketch", 1.0),
}
#: Minutes before a fresh start kept for diagnoses (the evaluator's frame ring).
DIAGNOSIS_HISTORY = timedelta(minutes=DIAGNOSIS_MINUTES)
#: Levels of the rollup sketch states (0003_rollups.sql), as sql/statements/alerts_hourly_quantiles.sql
#: merges them: a metric's quantile is the element at its level's position.
SKETCH_LEVELS = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class _Minute:
    minute: datetime
    frame: pd.DataFrame


def bootstrap(evaluator: Evaluator, client: Client, database: str, now: datetime) -> int:
    """Load the history before ``now`` into ``evaluator``; returns the hourly rows recorded."""
    database = identifier(database)
    current_hour = now.replace(minute=0, second=0, microsecond=0)
    start = now - evaluator.store.hour_retention
    hours = _rollup(client, database, "spans_hour", "hour", start, current_hour)
    loaded = evaluator.learn_hours(hours)
    for family in _percentile_families(evaluator):
        table = _hourly_quantiles(client, database, family, start, current_hour)
        evaluator.store.record_hours(family, table)
        loaded += len(table)
    remembered = remember_minutes(evaluator, client, database, now - DIAGNOSIS_HISTORY, current_hour)
    replayed = 0
    for minute, frame in _minutes(client, database, current_hour, now):
        evaluator.evaluate(_Minute(minute, frame))
        replayed += 1
    log.info(
        "alert baselines bootstrapped from %s: %d hourly rows, %d minutes evaluated, %d kept for diagnoses",
        database,
        loaded,
        replayed,
        remembered,
    )
    return loaded


def remember_minutes(evaluator: Evaluator, client: Client, database: str, start: datetime, end: datetime) -> int:
    """The ``spans_minute`` minutes in [start, end) into the evaluator's diagnosis frames (also
    after a restored state: the frames are not saved); returns how many."""
    count = 0
    for minute, frame in _minutes(client, identifier(database), start, end):
        evaluator.remember(minute, frame)
        count += 1
    return count


def _minutes(client: Client, database: str, start: datetime, end: datetime) -> Iterator[tuple[datetime, pd.DataFrame]]:
    minutes = _rollup(client, database, "spans_minute", "minute", start, end)
    for minute, frame in minutes.groupby("minute", sort=True) if len(minutes) else ():
        yield minute.to_pydatetime(), frame.reset_index(drop=True)


def _percentile_families(evaluator: Evaluator) -> set[Family]:
    return {
        family_of(clause, tuple(rule.scope))
        for rule in evaluator.rules
        if not rule.pipeline
        for clause in rule.clauses
        if clause.spec.kind == "percentile"
    }


def _rollup(client: Client, database: str, table: str, bucket: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Counter and map columns of a rollup in [start, end), summed per grain group and bucket.

    The aggregate list depends on the table's columns, so it is built here, from identifiers only.
    """
    columns: dict[str, str] = {
        str(name): str(kind)
        for name, kind in client.query(
            statement("alerts_rollup_columns"), parameters={"db": database, "table": table}
        ).result_rows
    }
    sums = [
        identifier(name)
        for name, kind in columns.items()
        if name not in DIMENSIONS and name != bucket and not kind.startswith("AggregateFunction")
    ]
    aggregates = [f"{'sumMap' if 'Map(' in columns[name] else 'sum'}({name}) AS {name}" for name in sums]
    sql = render(
        statement("alerts_rollup_sums"),
        {
            "database": identifier(database),
            "table": identifier(table),
            "bucket": identifier(bucket),
            "dimensions": identifier_list(DIMENSIONS),
            "aggregates": ", ".join(aggregates),
        },
    )
    frame = client.query_df(sql, parameters={"start": start, "end": end})
    if len(frame):
        frame[bucket] = pd.to_datetime(frame[bucket], utc=True)
    return frame


def _hourly_quantiles(client: Client, database: str, family: Family, start: datetime, end: datetime) -> pd.DataFrame:
    metric = METRICS[family.metric]
    if metric.sketch is None:
        raise ValueError(f"metric {family.metric} has no sketch to take quantiles of")
    column, divisor = SKETCH_COLUMNS[metric.sketch]
    level = SKETCH_LEVELS.index(metric.quantile) + 1
    sql = render(
        statement("alerts_hourly_quantiles"),
        {
            "database": identifier(database),
            "group": identifier_list([*family.dims, "hour"]),
            "column": identifier(column),
            "level": str(level),
            "divisor": str(divisor),
        },
    )
    table = client.query_df(sql, parameters={"start": start, "end": end, "kinds": list(metric.kinds or ())})
    if table.empty:
        return pd.DataFrame(columns=[*family.dims, "hour", "num", "den", "value"])
    table["hour"] = [h.to_pydatetime() for h in pd.to_datetime(table["hour"], utc=True)]
    table["num"] = 0.0
    return table
