"""One partition batch of Kafka messages -> insert-ready span rows + dead letters (no I/O).

1. Decode (orjson) and validate each message (pydantic-core on the whole array); an item that
   fails validation, or a message that is not JSON spans, becomes a dead letter.
2. Drop re-sent spans (streams/resends.py) when the partition's recent keys are given.
3. Build rows for the remaining spans as one column batch: derive, price, shape for the
   ``spans`` table, convert to Arrow. When a span's content makes this fail, the batch is
   bisected (streams/isolate.py): the spans that fail alone are dead-lettered with the
   exception as the reason and the rest become one or more row parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from spanline.contract.dead_letter import dead_letter, invalid_item_letters
from spanline.contract.validation import validate_items
from spanline.streams.batcher import Batch, Message
from spanline.streams.derive import derive
from spanline.streams.faults import describe
from spanline.streams.frame import arrow_rows, spans_to_frame, table_rows
from spanline.streams.isolate import isolate
from spanline.streams.pricing import PriceCatalog
from spanline.streams.resends import RecentSpans, span_keys

DeadLetter = tuple[bytes, bytes]


@dataclass
class ValidSpans:
    """A batch's valid spans in offset order, each with the message and item it came from."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)

    def add(self, message: Message, spans: list[dict[str, Any]], items: list[int]) -> None:
        self.spans += spans
        self.items += items
        self.offsets += [message.offset] * len(spans)
        self.sources += [message.source] * len(spans)
        self.stamps += [message.timestamp_ms] * len(spans)

    def keys(self) -> np.ndarray:
        return span_keys(
            [span.get("tenant_id", "") for span in self.spans],
            [span["trace_id"] for span in self.spans],
            [span["span_id"] for span in self.spans],
        )

    def select(self, keep: np.ndarray) -> ValidSpans:
        chosen: list[int] = np.flatnonzero(keep).tolist()
        return ValidSpans(
            [self.spans[i] for i in chosen],
            [self.offsets[i] for i in chosen],
            [self.items[i] for i in chosen],
            [self.sources[i] for i in chosen],
            [self.stamps[i] for i in chosen],
        )


@dataclass
class RowsPart:
    """Rows of the batch's valid spans ``start..stop-1``, as the ``spans`` table stores them."""

    start: int
    stop: int
    rows: pd.DataFrame
    table: pa.Table
    keys: np.ndarray  # span identities (streams/resends.py)
    stamps: np.ndarray  # Kafka timestamps of their messages, ms
    items: np.ndarray  # each span's index in its message, for dead letters' keys


@dataclass
class ProcessedBatch:
    parts: list[RowsPart]
    dead_letters: list[DeadLetter] = field(default_factory=list)
    spans_in: int = 0
    resends: int = 0
    spans_valid: int = 0  # after re-sends were dropped: the span index range the parts cover

    @property
    def rows(self) -> pd.DataFrame | None:
        """All rows of the batch in one frame (None when no span is left to store)."""
        if not self.parts:
            return None
        return self.parts[0].rows if len(self.parts) == 1 else pd.concat([p.rows for p in self.parts])


def process_batch(batch: Batch, topic: str, catalog: PriceCatalog, recent: RecentSpans | None = None) -> ProcessedBatch:
    valid, letters, spans_in = decode_batch(batch, topic)
    stamps = np.asarray(valid.stamps, dtype=np.int64)
    keys = valid.keys() if recent is not None else np.zeros(len(stamps), dtype=np.uint64)
    resends = 0
    if recent is not None and valid.spans:
        repeated = recent.resends(keys, stamps)
        resends = int(repeated.sum())
        if resends:
            valid, keys, stamps = valid.select(~repeated), keys[~repeated], stamps[~repeated]

    def build(start: int, stop: int) -> RowsPart:
        rows = build_rows(valid, start, stop, topic, batch.partition, catalog)
        return RowsPart(
            start,
            stop,
            rows,
            arrow_rows(rows),
            keys[start:stop],
            stamps[start:stop],
            np.asarray(valid.items[start:stop], dtype=np.int64),
        )

    built = isolate(0, len(valid.spans), build)
    for index, exc in built.faults:
        letters.append(
            span_letter(valid, index, topic, batch.partition, f"span could not be processed: {describe(exc)}")
        )
    return ProcessedBatch([part for _, _, part in built.results], letters, spans_in, resends, len(valid.spans))


def decode_batch(batch: Batch, topic: str) -> tuple[ValidSpans, list[DeadLetter], int]:
    """Valid spans of every message, dead letters for everything else; never raises."""
    valid = ValidSpans()
    letters: list[DeadLetter] = []
    spans_in = 0
    for message in batch.messages:
        origin = f"{topic}/{batch.partition}/{message.offset}"
        try:
            items = _decode(message.value)
            if items is None:
                letters.append(
                    dead_letter(
                        reason="message is not a JSON array of spans",
                        source=message.source,
                        dedup_key=origin,
                        payload=message.value,
                    )
                )
                continue
            result = validate_items(items)
            letters += invalid_item_letters(result.invalid, source=message.source, origin=origin)
        except Exception as exc:  # whatever a message's content does, it costs no other message
            letters.append(
                dead_letter(
                    reason=f"message could not be read: {describe(exc)}",
                    source=message.source,
                    dedup_key=origin,
                    payload=message.value,
                )
            )
            continue
        spans_in += len(items)
        valid.add(message, result.spans, result.indexes)
    return valid, letters, spans_in


def build_rows(
    valid: ValidSpans, start: int, stop: int, topic: str, partition: int, catalog: PriceCatalog
) -> pd.DataFrame:
    """Spans ``start..stop-1`` as ``spans`` table rows: one column batch, derived and priced."""
    frame = derive(spans_to_frame(valid.spans[start:stop]))
    priced = pd.concat([frame, catalog.price(frame)], axis=1)
    return table_rows(
        priced,
        source=np.asarray(valid.sources[start:stop]),
        topic=topic,
        partition=partition,
        offsets=np.asarray(valid.offsets[start:stop]),
        timestamps=np.asarray(valid.stamps[start:stop], dtype=np.int64),
    )


def span_letter(valid: ValidSpans, index: int, topic: str, partition: int, reason: str) -> DeadLetter:
    """The dead letter of one valid span that a later step could not handle."""
    span = valid.spans[index]
    return dead_letter(
        reason=reason,
        source=valid.sources[index],
        dedup_key=f"{topic}/{partition}/{valid.offsets[index]}#{valid.items[index]}",
        payload=span,
        tenant_id=str(span.get("tenant_id", "")),
    )


def _decode(value: bytes | None) -> list[object] | None:
    if not value:
        return None
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if isinstance(decoded, dict):
        return [decoded]
    return decoded if isinstance(decoded, list) else None
