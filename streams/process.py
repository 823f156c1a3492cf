"""One partition batch of Kafka messages -> enriched span rows + dead letters.

Decode (orjson) and validate per message (pydantic-core on the whole array), then work on
one column batch for the whole Kafka batch: derive, price, shape for the ``spans`` table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import orjson
import pandas as pd

from spanline.collectors.dead_letter import dead_letter, invalid_item_letters
from spanline.collectors.schema import Span
from spanline.collectors.validation import validate_items
from spanline.streams.batcher import Batch
from spanline.streams.derive import derive
from spanline.streams.frame import spans_to_frame, table_rows
from spanline.streams.pricing import PriceCatalog

DeadLetter = tuple[bytes, bytes]


@dataclass
class ProcessedBatch:
    rows: pd.DataFrame | None
    dead_letters: list[DeadLetter] = field(default_factory=list)
    spans_in: int = 0


def process_batch(batch: Batch, topic: str, catalog: PriceCatalog) -> ProcessedBatch:
    spans: list[Span] = []
    sources: list[str] = []
    offsets: list[int] = []
    letters: list[DeadLetter] = []
    spans_in = 0
    for message in batch.messages:
        origin = f"{topic}/{batch.partition}/{message.offset}"
        items = _decode(message.value)
        if items is None:
            letters.append(
                dead_letter(reason="message is not a JSON array of spans", source=message.source,
                            dedup_key=origin, payload=message.value)
            )
            continue
        spans_in += len(items)
        result = validate_items(items)
        letters += invalid_item_letters(result.invalid, source=message.source, origin=origin)
        spans += result.spans
        sources += [message.source] * len(result.spans)
        offsets += [message.offset] * len(result.spans)
    if not spans:
        return ProcessedBatch(None, letters, spans_in)
    frame = derive(spans_to_frame(spans))
    priced = pd.concat([frame, catalog.price(frame)], axis=1)
    rows = table_rows(
        priced, source=np.asarray(sources), topic=topic, partition=batch.partition, offsets=np.asarray(offsets)
    )
    return ProcessedBatch(rows, letters, spans_in)


def _decode(value: bytes) -> list[object] | None:
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if isinstance(decoded, dict):
        return [decoded]
    return decoded if isinstance(decoded, list) else None
