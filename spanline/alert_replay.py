"""Replay the independent traffic model through the worker's own code into the real evaluator.

The fast, faithful path of ``spanline evaluate-alerts``: span dicts are cut into Kafka-sized
messages and run through ``process_batch`` (decode, validate, derive, price: the rows the worker
stores), aggregated by ``spanline.windows.aggregate`` (the function the live windows use) into the
contract's minute frames, and evaluated minute by minute by ``alerts.evaluator.Evaluator``. Kafka
and ClickHouse are left out: the exactly-once path is tested on its own (tests/test_pipeline_e2e.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

import orjson
import pandas as pd

from spanline.alerts.evaluator import Evaluator
from spanline.alerts.events import AlertEvent
from spanline.alerts.rules import Rule, load_rules
from spanline.contracts import load_contracts
from spanline.simulator.traffic_model import BLOCK_MINUTES, TrafficModel
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from spanline.windows.aggregate import ROW_COLUMNS, aggregate
from spanline.windows.merger import MinuteFigures, figures_frame

SPANS_PER_MESSAGE = 500
#: Hours at the start learnt as closed history (a fresh worker's bootstrap from the rollups).
WARMUP_HOURS = 6


@dataclass(frozen=True)
class Replay:
    """What one rate's replay produced: every alert state change and the minutes evaluated."""

    requests_per_s: float
    events: list[AlertEvent]
    evaluated_from: datetime
    evaluated_until: datetime
    spans: int


def replay(
    model: TrafficModel,
    days: float,
    catalog: PriceCatalog,
    progress: Callable[[int, int], None] | None = None,
    warmup_hours: float = WARMUP_HOURS,
    rules: list[Rule] | None = None,
) -> Replay:
    """Learn the first ``warmup_hours`` (whole hours) as closed hours, then evaluate every later
    minute with ``rules`` (default: the bundled alerts/rules.yaml)."""
    total = round(days * 24 * 60)
    warmup = min(int(warmup_hours) * 60, total)
    evaluator = Evaluator(load_rules() if rules is None else rules, load_contracts())
    blocks = complete_blocks(model, total, catalog)
    history = [rows for _, rows in islice(blocks, -(-warmup // BLOCK_MINUTES))]
    learnt = pd.concat(history, ignore_index=True)
    spans = len(learnt)
    evaluator.learn_hours(_hours(learnt))
    for figures in _minutes(learnt):
        evaluator.remember(figures.minute, figures.frame)
    events: list[AlertEvent] = []
    for end, rows in blocks:
        spans += len(rows)
        for figures in _minutes(rows):
            events.extend(evaluator.evaluate(figures))
        if progress is not None:
            progress(end, total)
    return Replay(
        model.requests_per_s,
        events,
        model.start + timedelta(minutes=warmup),
        model.start + timedelta(minutes=total),
        spans,
    )


def complete_blocks(model: TrafficModel, total: int, catalog: PriceCatalog) -> Iterator[tuple[int, pd.DataFrame]]:
    """(End minute, stored rows) of each block of minutes ``[0, total)``, every minute whole.

    A trace begun in a block's last minute has spans that start after the block; they are held
    back for the block they start in, as the live merger hands a minute over only once every
    partition closed it. Handed over early, the next block's first minute would be evaluated from
    those few spans and the rest of it ignored as already evaluated. Spans starting at or after
    ``total`` are left out.
    """
    held: pd.DataFrame | None = None
    end = 0
    for chunk in model.minutes(0, total):
        end = min(total, end + BLOCK_MINUTES)
        rows = stored_rows(chunk, catalog)
        if held is not None and not held.empty:
            rows = pd.concat([held, rows], ignore_index=True)
        late = (rows["start_time"] >= model.start + timedelta(minutes=end)).to_numpy()
        held = rows[late]
        yield end, rows[~late].reset_index(drop=True)


def stored_rows(spans: list[dict[str, object]], catalog: PriceCatalog) -> pd.DataFrame:
    """The ``spans`` rows the worker stores for these spans (the columns the windows read)."""
    messages = [
        Message(0, offset, orjson.dumps(spans[first : first + SPANS_PER_MESSAGE]), "evaluate-alerts")
        for offset, first in enumerate(range(0, len(spans), SPANS_PER_MESSAGE))
    ]
    if not messages:
        return pd.DataFrame(columns=list(ROW_COLUMNS))
    processed = process_batch(Batch(0, 0, messages[-1].offset, messages, False), "spans", catalog)
    if processed.dead_letters:
        raise ValueError(f"the traffic model produced invalid spans: {processed.dead_letters[0]}")
    assert processed.rows is not None
    return processed.rows.loc[:, list(ROW_COLUMNS)]


def _minutes(rows: pd.DataFrame) -> Iterator[MinuteFigures]:
    """The rows' closed minutes, oldest first, as the merger hands them to the evaluator."""
    if rows.empty:
        return
    frame = figures_frame(aggregate(rows.reset_index(drop=True)))
    for minute, figures in frame.groupby("minute", sort=True):
        yield MinuteFigures(pd.Timestamp(minute).to_pydatetime(), figures.reset_index(drop=True), 0)


def _hours(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows per closed hour, shaped like a ``spans_hour`` read (grain + ``hour``)."""
    hourly = rows.assign(start_time=rows["start_time"].dt.floor("h"))
    return figures_frame(aggregate(hourly.reset_index(drop=True))).rename(columns={"minute": "hour"})
