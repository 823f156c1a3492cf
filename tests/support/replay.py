"""Scenario traffic through the worker's own code, without Kafka: the fast path of the alert tests.

Spans are cut into Kafka-sized messages and run through ``process_batch`` (decode, validate,
derive, price: the rows the worker stores), aggregated by the windows package's ``aggregate``
(the function both the live windows and their recovery use) and turned into the contract's
``MinuteFigures`` by ``figures_frame``, exactly what ``MinuteMerger`` hands the evaluator.
Closed hours before the replay are aggregated the same way at hour grain and loaded with
``Evaluator.learn_hours``, as the worker's bootstrap does from ``spans_hour`` on a fresh start.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson
import pandas as pd

from spanline.alerts.evaluator import Evaluator
from spanline.alerts.events import AlertEvent
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from spanline.windows.aggregate import ROW_COLUMNS, aggregate
from spanline.windows.merger import MinuteFigures, figures_frame

#: Spans per Kafka message (as the SDK and the receiver batch them) and messages per worker batch.
SPANS_PER_MESSAGE = 500
MESSAGES_PER_BATCH = 40


def stored_rows(chunks: Iterable[list[dict[str, object]]], catalog: PriceCatalog) -> pd.DataFrame:
    """The ``spans`` rows the worker would store for these spans (the columns the windows read)."""
    spans = [span for chunk in chunks for span in chunk]
    messages = [
        Message(0, offset, orjson.dumps(spans[first : first + SPANS_PER_MESSAGE]), "replay")
        for offset, first in enumerate(range(0, len(spans), SPANS_PER_MESSAGE))
    ]
    frames = []
    for first in range(0, len(messages), MESSAGES_PER_BATCH):
        batch = messages[first : first + MESSAGES_PER_BATCH]
        processed = process_batch(Batch(0, batch[0].offset, batch[-1].offset, batch, False), "spans", catalog)
        assert not processed.dead_letters, processed.dead_letters[:1]
        if processed.rows is not None:
            frames.append(processed.rows.loc[:, list(ROW_COLUMNS)])
    return pd.concat(frames, ignore_index=True)


def minute_figures(rows: pd.DataFrame) -> Iterator[MinuteFigures]:
    """The closed minutes of these rows, oldest first, as the merger emits them."""
    for minute, spans in rows.groupby(rows["start_time"].dt.floor("min"), sort=True):
        yield MinuteFigures(minute.to_pydatetime(), figures_frame(aggregate(spans.reset_index(drop=True))), 0)


def hour_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows aggregated per closed hour, shaped like a ``spans_hour`` read (grain + ``hour``)."""
    hourly = rows.assign(start_time=rows["start_time"].dt.floor("h"))
    frame = figures_frame(aggregate(hourly))
    return frame.rename(columns={"minute": "hour"})


def replay(evaluator: Evaluator, figures: Iterable[MinuteFigures]) -> list[AlertEvent]:
    """Every state change of the evaluator over these minutes (no pipeline figures: span rules only)."""
    return [event for minute in figures for event in evaluator.evaluate(minute)]
