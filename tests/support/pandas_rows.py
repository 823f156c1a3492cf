"""The worker's insert rows as it built them in pandas before the Arrow insert table
(streams/frame.py ``insert_table``): the reference the Arrow assembly must equal column for column.

Derive, price, fill the defaults and add the pipeline columns on a pandas frame, then convert the
whole frame with ``pyarrow.Table.from_pandas``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from spanline.streams.derive import derive
from spanline.streams.frame import NULLABLE_BOOLS, NULLABLE_FLOATS, TABLE_COLUMNS, TEXT_DEFAULTS, ZERO_DEFAULTS
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import ValidSpans

_ATTRIBUTES = pa.map_(pa.string(), pa.string())
_MAX_STAMP_MS = 7_258_118_400_000


def pandas_rows(
    valid: ValidSpans, start: int, stop: int, topic: str, partition: int, catalog: PriceCatalog
) -> tuple[pd.DataFrame, pa.Table]:
    """Spans ``start..stop-1`` of ``valid`` as rows and as the Arrow table made from them."""
    frame = derive(valid.frame.iloc[start:stop].reset_index(drop=True))
    out = pd.concat([frame, catalog.price(frame)], axis=1)
    for name in TEXT_DEFAULTS:
        out[name] = out[name].fillna("").astype(str)
    for name in ZERO_DEFAULTS:
        out[name] = out[name].fillna(0).astype("uint32")
    for name in NULLABLE_FLOATS:
        out[name] = out[name].astype("Float64")
    for name in NULLABLE_BOOLS:
        out[name] = out[name].astype("boolean")
    out["top_k"] = out["top_k"].astype("UInt32")
    for name in ("index_documents", "index_chunks"):
        out[name] = out[name].astype("UInt64")
    out["source"] = valid.sources[start:stop]
    out["ingested_at"] = pd.Timestamp(datetime.now(UTC)).as_unit("ms")
    out["kafka_topic"] = topic
    out["kafka_partition"] = np.int32(partition)
    out["kafka_offset"] = valid.offsets[start:stop].astype("int64")
    stamps = np.clip(valid.stamps[start:stop], 0, _MAX_STAMP_MS)
    out["kafka_timestamp"] = pd.to_datetime(stamps, unit="ms", utc=True).as_unit("ms")
    rows = out.loc[:, list(TABLE_COLUMNS)]
    attributes = pa.array([list(value.items()) for value in rows["attributes"]], type=_ATTRIBUTES)
    table = pa.Table.from_pandas(rows.drop(columns=["attributes"]), preserve_index=False)
    return rows, table.add_column(rows.columns.get_loc("attributes"), "attributes", attributes)
