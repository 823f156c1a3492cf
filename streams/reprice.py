"""Re-pricing stored spans after a price correction, with the rollups following exactly once.

``spans`` is a plain MergeTree (rows are never replaced) and the rollups are sums kept by
materialized views on inserts, so a new cost reaches them as a *difference*. Per chunk of
``start_time`` (default one hour), in this order:

1. **Read** the chunk's stored spans and, from ``span_cost_deltas``, the cost each span's newest
   correction set. That cost, else the stored one, is what the rollups hold for the span.
2. **Price** them with the current catalog (:meth:`PriceCatalog.price`, the worker's code path) and
   keep the spans whose cost or ``cost_known`` differs from what the rollups hold.
3. **Roll up**: insert one ``span_cost_deltas`` row per changed span (cost before and after). Its
   view adds after - before to ``spans_minute``, whose views carry it to ``spans_hour`` and
   ``spans_day``, in the same insert. The insert's token is a hash of the rows, and a chunk whose
   token is already in the table is not inserted again, however long ago that was.
4. **Rewrite** the spans rows (``ALTER TABLE … UPDATE`` through a Join table, waited for) to the
   cost the rollups now hold: the changed spans and any a crashed run left behind.

Why it is exactly once: after step 3 the rollups and ``span_cost_deltas`` agree, and step 1 reads
the rollups' view of each span from there, so a rerun after a crash between 3 and 4 finds nothing
to change and only redoes the rewrite; a crash inside step 3's insert is retried with the same
token (ClickHouse drops the repeat at every level). A run that completed leaves spans, deltas
and rollups equal, so a second run changes nothing. Mutations are heavy (each rewrites the cost
columns of the parts it touches), which is acceptable for an occasional correction; spans whose
cost is unchanged are never touched.

Spans stored while a run is under way are priced by the worker's own catalog; run ``reprice``
again after the workers restart with the corrected prices.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from clickhouse_connect.driver.client import Client

from spanline.contract.schema import TOKEN_DETAIL_FIELDS, TOKEN_FIELDS
from spanline.sql.statements import render_statement, statement
from spanline.streams.pricing import PriceCatalog
from spanline.streams.sinks import DEDUP_SETTINGS

#: A span's identity in ``spans`` (its Kafka coordinates tell apart a span id sent twice).
KEY: Final = ("tenant_id", "trace_id", "span_id", "kafka_partition", "kafka_offset")
COST_COLUMNS: Final = ("input_cost_usd", "cache_read_cost_usd", "cache_write_cost_usd", "output_cost_usd", "cost_usd")
#: The columns a re-pricing writes, in ``spans`` and in ``span_cost_deltas`` (``old_`` = before).
PRICE_FIELDS: Final = (*COST_COLUMNS, "cost_known", "price_source", "price_version", "price_entry")
#: Span columns a delta row carries: the rollup grain and what the rollups' cost maps are keyed by.
DELTA_DIMENSIONS: Final = (
    "start_time",
    "service",
    "feature",
    "provider",
    "model_requested",
    "model_response",
    "route",
    "kind",
    "attempt",
    "model_tier",
    "prompt_id",
    "prompt_version",
)
#: Costs closer than this (relative) are the same cost: float sums in another order differ by an ulp.
SAME_COST_RTOL: Final = 1e-12
STEP_ROLLED_UP: Final = "rolled up"
STEP_REWRITTEN: Final = "spans rewritten"


@dataclass(frozen=True)
class Chunk:
    since: datetime
    until: datetime

    def parameters(self) -> dict[str, object]:
        return {"since": self.since, "until": self.until}


@dataclass
class RepriceResult:
    """What a run changed: one row per changed span (``day``, ``provider``, ``model``, costs
    before and after, ``cost_known`` before and after), plus the counts the summary reports."""

    changes: list[pd.DataFrame] = field(default_factory=list)
    chunks: int = 0
    spans_read: int = 0
    rewritten: int = 0
    resumed: int = 0  # spans a crashed run had rolled up but not rewritten

    def by_model_and_day(self) -> pd.DataFrame:
        """Per day, provider and model: spans repriced, cost before, after and the difference, and
        spans that gained (or lost) a price."""
        columns = ["day", "provider", "model", "spans", "cost_before", "cost_after", "delta", "newly_priced"]
        if not self.changes:
            return pd.DataFrame(columns=columns)
        changes = pd.concat(self.changes, ignore_index=True)
        changes["newly_priced"] = changes["cost_known"].astype(int) - changes["old_cost_known"].astype(int)
        summary = (
            changes.groupby(["day", "provider", "model"], sort=True)
            .agg(
                spans=("cost_usd", "size"),
                cost_before=("old_cost_usd", "sum"),
                cost_after=("cost_usd", "sum"),
                newly_priced=("newly_priced", "sum"),
            )
            .reset_index()
        )
        summary["delta"] = summary["cost_after"] - summary["cost_before"]
        return summary.loc[:, columns]


def chunks(since: datetime, until: datetime, size: timedelta) -> Iterator[Chunk]:
    """[since, until) in consecutive pieces of ``size`` (the last may be shorter)."""
    if until <= since:
        raise ValueError(f"--until ({until.isoformat()}) must be after --since ({since.isoformat()})")
    if size <= timedelta(0):
        raise ValueError("the chunk size must be positive")
    start = since
    while start < until:
        end = min(start + size, until)
        yield Chunk(start, end)
        start = end


def reprice(
    client: Client,
    database: str,
    catalog: PriceCatalog,
    since: datetime,
    until: datetime,
    *,
    chunk: timedelta = timedelta(hours=1),
    dry_run: bool = False,
    after_step: Callable[[Chunk, str], None] | None = None,
) -> RepriceResult:
    """Reprice the spans with ``since <= start_time < until``; see the module docstring.

    ``after_step(chunk, step)`` is called after each chunk's rollup insert and spans rewrite (for
    progress; a fault test raises from it to crash the run between the two). ``dry_run`` reports
    what would change and writes nothing.
    """
    result = RepriceResult()
    for piece in chunks(_utc(since), _utc(until), chunk):
        _reprice_chunk(client, database, catalog, piece, result, dry_run, after_step)
        result.chunks += 1
    return result


def _reprice_chunk(
    client: Client,
    database: str,
    catalog: PriceCatalog,
    chunk: Chunk,
    result: RepriceResult,
    dry_run: bool,
    after_step: Callable[[Chunk, str], None] | None,
) -> None:
    tokens = [*TOKEN_FIELDS, *TOKEN_DETAIL_FIELDS]
    stored = client.query_df(
        render_statement("reprice_spans_chunk", database=database, tokens=tokens), parameters=chunk.parameters()
    )
    result.spans_read += len(stored)
    if stored.empty:
        return
    held = _held_by_rollups(client, database, chunk, stored)
    priced = catalog.price(stored)
    changed = ~_same_price(priced, held)
    stale = ~changed & ~_same_price(stored, held)  # rolled up by a run that crashed before its rewrite
    if changed.any():
        deltas = _delta_rows(stored[changed], held[changed], priced[changed])
        result.changes.append(_change_summary(deltas))
        if not dry_run:
            _roll_up(client, database, chunk, deltas)
            if after_step is not None:
                after_step(chunk, STEP_ROLLED_UP)
    rewrite = changed | stale
    if rewrite.any() and not dry_run:
        target = pd.concat([priced[changed], held[stale]]).loc[stored.index[rewrite]]
        _rewrite(client, database, chunk, pd.concat([stored.loc[rewrite, list(KEY)], target], axis=1))
        result.rewritten += int(rewrite.sum())
        result.resumed += int(stale.sum())
        if after_step is not None:
            after_step(chunk, STEP_REWRITTEN)


def _held_by_rollups(client: Client, database: str, chunk: Chunk, stored: pd.DataFrame) -> pd.DataFrame:
    """Per stored span, the price the rollups hold: its newest correction's, else as stored."""
    latest = client.query_df(
        render_statement("reprice_latest_deltas", database=database), parameters=chunk.parameters()
    )
    held = stored.loc[:, list(PRICE_FIELDS)].copy()
    if latest.empty:
        return held
    keys = stored.loc[:, list(KEY)].astype({"tenant_id": str, "trace_id": str, "span_id": str})
    found = keys.merge(
        latest.astype({"tenant_id": str, "trace_id": str, "span_id": str}), on=list(KEY), how="left", indicator=True
    )
    corrected = (found["_merge"] == "both").to_numpy()
    for name in PRICE_FIELDS:
        held.loc[corrected, name] = found.loc[corrected, name].to_numpy()
    return held


def _same_price(left: pd.DataFrame, right: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Per span: the same cost_known and costs equal but for float rounding."""
    same: npt.NDArray[np.bool_] = left["cost_known"].to_numpy(bool) == right["cost_known"].to_numpy(bool)
    for name in COST_COLUMNS:
        a, b = left[name].to_numpy(np.float64), right[name].to_numpy(np.float64)
        same &= np.isclose(a, b, rtol=SAME_COST_RTOL, atol=0.0)
    return same


def _delta_rows(stored: pd.DataFrame, held: pd.DataFrame, priced: pd.DataFrame) -> pd.DataFrame:
    """``span_cost_deltas`` rows, sorted by span identity (their hash is the insert token)."""
    rows = pd.concat(
        [
            stored.loc[:, [*KEY, *DELTA_DIMENSIONS]],
            held.add_prefix("old_"),
            priced.loc[:, list(PRICE_FIELDS)],
        ],
        axis=1,
    )
    for name in ("tenant_id", "trace_id", "span_id"):
        rows[name] = rows[name].astype(str)
    for name in ("cost_known", "old_cost_known"):
        rows[name] = rows[name].astype(bool)
    return rows.sort_values(list(KEY), kind="stable", ignore_index=True)


def _change_summary(deltas: pd.DataFrame) -> pd.DataFrame:
    model = (
        deltas["model_requested"]
        .astype(str)
        .where(deltas["model_requested"].astype(str) != "", deltas["model_response"])
    )
    return pd.DataFrame(
        {
            "day": pd.to_datetime(deltas["start_time"], utc=True).dt.strftime("%Y-%m-%d"),
            "provider": deltas["provider"].astype(str),
            "model": model.astype(str),
            "old_cost_usd": deltas["old_cost_usd"],
            "cost_usd": deltas["cost_usd"],
            "old_cost_known": deltas["old_cost_known"],
            "cost_known": deltas["cost_known"],
        }
    )


def _token(deltas: pd.DataFrame) -> str:
    """A name for these rows that depends on nothing but their content."""
    identity = deltas.loc[:, [*KEY, *(f"old_{name}" for name in PRICE_FIELDS), *PRICE_FIELDS]]
    digest = hashlib.sha256(pd.util.hash_pandas_object(identity, index=False).to_numpy().tobytes()).hexdigest()
    return f"reprice:{digest[:40]}"


def _roll_up(client: Client, database: str, chunk: Chunk, deltas: pd.DataFrame) -> None:
    token = _token(deltas)
    seen = client.query(
        render_statement("reprice_token_seen", database=database), parameters={**chunk.parameters(), "token": token}
    ).result_rows[0][0]
    if seen:
        return
    rows = deltas.assign(token=token, repriced_at=pd.Timestamp(datetime.now(UTC)).as_unit("ms"))
    client.insert_df(
        f"{database}.span_cost_deltas", rows, settings={**DEDUP_SETTINGS, "insert_deduplication_token": token}
    )


def _rewrite(client: Client, database: str, chunk: Chunk, target: pd.DataFrame) -> None:
    """Set the spans' price columns to ``target``'s (keyed by :data:`KEY`), through a Join table."""
    join = f"reprice_join_{uuid.uuid4().hex}"
    client.command(render_statement("reprice_rewrite_1_create_join", database=database, join=join))
    try:
        rows = target.astype({"tenant_id": str, "trace_id": str, "span_id": str, "cost_known": bool})
        client.insert_df(f"{database}.{join}", rows.loc[:, [*KEY, *PRICE_FIELDS]].assign(present=1))
        client.command(
            render_statement("reprice_rewrite_2_update_spans", database=database, join=join),
            parameters=chunk.parameters(),
        )
    except BaseException:
        client.command(statement("reprice_rewrite_4_kill_mutation"), parameters={"database": database, "join": join})
        raise
    finally:
        client.command(render_statement("reprice_rewrite_3_drop_join", database=database, join=join))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
