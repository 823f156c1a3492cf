"""One partition batch of Kafka messages -> insert-ready span rows + dead letters (no I/O).

1. Decode and validate: the fast path decodes each message into typed records in C
   (spanline.contract.records), gathers the batch into Arrow columns once and checks what is
   left of the model over whole columns (spanline.contract.column_checks). A message the fast
   path cannot take whole — not JSON spans, a type, range or rule broken anywhere in it — takes
   the slow path: orjson and pydantic (validate_items), whose reasons become the dead letters,
   its valid items joining the batch's columns in offset order.
2. Drop re-sent spans (streams/resends.py) when the partition's recent keys are given.
3. Build rows for the remaining spans as one column batch: derive and price (pandas), then
   assemble the ``spans`` insert table in Arrow from the decoded columns and the computed ones
   (streams/frame.py). When a span's content makes this fail, the batch is
   bisected (streams/isolate.py): the spans that fail alone are dead-lettered with the
   exception as the reason and the rest become one or more row parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from spanline.contract.column_checks import refused
from spanline.contract.columns import SpanColumns, dict_columns, record_columns
from spanline.contract.dead_letter import dead_letter, invalid_item_letters
from spanline.contract.records import decode_records
from spanline.contract.validation import validate_items
from spanline.streams.batcher import Batch, Message
from spanline.streams.derive import derive
from spanline.streams.faults import describe
from spanline.streams.frame import columns_to_frame, insert_table, rows_frame
from spanline.streams.isolate import isolate
from spanline.streams.pricing import PriceCatalog
from spanline.streams.resends import RecentSpans, span_keys

DeadLetter = tuple[bytes, bytes]


@dataclass
class ValidSpans:
    """A batch's valid spans in offset order as Arrow columns and as one frame of them, each with
    the message and item it came from; ``payloads`` holds each span as decoded (a record or a
    dict), for dead letters."""

    columns: SpanColumns
    frame: pd.DataFrame
    payloads: list[Any]
    offsets: np.ndarray
    items: np.ndarray
    sources: np.ndarray
    stamps: np.ndarray

    def __len__(self) -> int:
        return len(self.payloads)

    def keys(self) -> np.ndarray:
        frame = self.frame
        return span_keys(
            frame["tenant_id"].to_numpy(object), frame["trace_id"].to_numpy(object), frame["span_id"].to_numpy(object)
        )

    def select(self, keep: np.ndarray) -> ValidSpans:
        chosen: list[int] = np.flatnonzero(keep).tolist()
        return ValidSpans(
            self.columns.take(chosen),
            self.frame.iloc[chosen].reset_index(drop=True),
            [self.payloads[i] for i in chosen],
            self.offsets[keep],
            self.items[keep],
            self.sources[keep],
            self.stamps[keep],
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

    @property
    def table(self) -> pa.Table | None:
        """All rows of the batch as one Arrow insert table (None when no span is left to store)."""
        if not self.parts:
            return None
        return pa.concat_tables([p.table for p in self.parts])


def process_batch(batch: Batch, topic: str, catalog: PriceCatalog, recent: RecentSpans | None = None) -> ProcessedBatch:
    valid, letters, spans_in = decode_batch(batch, topic)
    stamps = valid.stamps
    keys = valid.keys() if recent is not None else np.zeros(len(stamps), dtype=np.uint64)
    resends = 0
    if recent is not None and len(valid):
        repeated = recent.resends(keys, stamps)
        resends = int(repeated.sum())
        if resends:
            valid, keys, stamps = valid.select(~repeated), keys[~repeated], stamps[~repeated]

    def build(start: int, stop: int) -> RowsPart:
        rows, table = build_rows(valid, start, stop, topic, batch.partition, catalog)
        return RowsPart(start, stop, rows, table, keys[start:stop], stamps[start:stop], valid.items[start:stop])

    built = isolate(0, len(valid), build)
    for index, exc in built.faults:
        letters.append(
            span_letter(valid, index, topic, batch.partition, f"span could not be processed: {describe(exc)}")
        )
    return ProcessedBatch([part for _, _, part in built.results], letters, spans_in, resends, len(valid))


@dataclass
class _Piece:
    """The valid spans of one message: their columns, each as decoded, and their item indexes."""

    message: Message
    columns: SpanColumns
    payloads: list[Any]
    items: np.ndarray


def decode_batch(batch: Batch, topic: str) -> tuple[ValidSpans, list[DeadLetter], int]:
    """Valid spans of every message, dead letters for everything else; never raises."""
    decoded = [decode_records(message.value) for message in batch.messages]
    fast = _fast_columns(decoded)
    pieces: list[_Piece] = []
    letters: list[DeadLetter] = []
    spans_in = 0
    for index, message in enumerate(batch.messages):
        records = decoded[index]
        if records is not None and (index in fast or not records):
            spans_in += len(records)
            if records:
                pieces.append(_Piece(message, fast[index], records, np.arange(len(records), dtype=np.int64)))
            continue
        piece, items = _slow_piece(message, f"{topic}/{batch.partition}/{message.offset}", letters)
        spans_in += items
        if piece is not None:
            pieces.append(piece)
    return _valid_spans(pieces), letters, spans_in


def _fast_columns(decoded: list[list[Any] | None]) -> dict[int, SpanColumns]:
    """Columns of every message the fast path takes whole, by message index: all decoded records
    are gathered and checked at once; a message with any span the checks refuse is left out."""
    taken = [index for index, records in enumerate(decoded) if records]
    if not taken:
        return {}
    lengths = [len(decoded[index] or ()) for index in taken]
    try:
        columns = record_columns([record for index in taken for record in decoded[index] or ()])
        owners = np.repeat(np.arange(len(taken)), lengths)
        refused_messages = set(owners[refused(columns)].tolist())
    except Exception:  # a value the columns cannot hold (a date that does not exist): message by message
        each = {index: _message_columns(decoded[index] or []) for index in taken}
        return {index: columns for index, columns in each.items() if columns is not None}
    bounds = np.cumsum([0, *lengths]).tolist()
    return {
        index: columns.slice(bounds[position], bounds[position + 1])
        for position, index in enumerate(taken)
        if position not in refused_messages
    }


def _message_columns(records: list[Any]) -> SpanColumns | None:
    try:
        columns = record_columns(records)
        return None if refused(columns).any() else columns
    except Exception:  # the slow path will say what is wrong with it
        return None


def _slow_piece(message: Message, origin: str, letters: list[DeadLetter]) -> tuple[_Piece | None, int]:
    """One message through orjson and pydantic: its valid spans, and how many items it held;
    dead letters for the message or its invalid items are appended to ``letters``."""
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
            return None, 0
        result = validate_items(items)
        columns = dict_columns(result.spans)
    except Exception as exc:  # whatever a message's content does, it costs no other message
        letters.append(
            dead_letter(
                reason=f"message could not be read: {describe(exc)}",
                source=message.source,
                dedup_key=origin,
                payload=message.value,
            )
        )
        return None, 0
    letters += invalid_item_letters(result.invalid, source=message.source, origin=origin)
    if not result.spans:
        return None, len(items)
    return _Piece(message, columns, result.spans, np.asarray(result.indexes, dtype=np.int64)), len(items)


def _valid_spans(pieces: list[_Piece]) -> ValidSpans:
    counts = [len(piece.payloads) for piece in pieces]
    columns = SpanColumns.concat([piece.columns for piece in pieces])
    return ValidSpans(
        columns,
        columns_to_frame(columns),
        [payload for piece in pieces for payload in piece.payloads],
        np.repeat(np.asarray([piece.message.offset for piece in pieces], dtype=np.int64), counts),
        np.concatenate([piece.items for piece in pieces]) if pieces else np.zeros(0, dtype=np.int64),
        np.repeat(np.asarray([piece.message.source for piece in pieces], dtype=object), counts),
        np.repeat(np.asarray([piece.message.timestamp_ms for piece in pieces], dtype=np.int64), counts),
    )


def build_rows(
    valid: ValidSpans, start: int, stop: int, topic: str, partition: int, catalog: PriceCatalog
) -> tuple[pd.DataFrame, pa.Table]:
    """Spans ``start..stop-1`` as ``spans`` table rows, derived and priced: the insert table, and
    the rows frame the minute aggregation reads."""
    frame = derive(valid.frame.iloc[start:stop].reset_index(drop=True))
    columns = valid.columns.slice(start, stop)
    table = insert_table(
        columns,
        frame,
        catalog.price(frame),
        source=valid.sources[start:stop],
        topic=topic,
        partition=partition,
        offsets=valid.offsets[start:stop],
        timestamps=valid.stamps[start:stop],
    )
    return rows_frame(table, columns), table


def span_letter(valid: ValidSpans, index: int, topic: str, partition: int, reason: str) -> DeadLetter:
    """The dead letter of one valid span that a later step could not handle."""
    payload = valid.payloads[index]
    span = payload if isinstance(payload, dict) else msgspec.to_builtins(payload)
    return dead_letter(
        reason=reason,
        source=str(valid.sources[index]),
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
