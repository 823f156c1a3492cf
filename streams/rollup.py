"""The ``spans_minute`` rows of stored spans, from the stream windows' own aggregation.

The minute rollup used to be a materialized view over ``spans`` that restated every column of
spanline/windows/aggregate.py in SQL. Now the worker writes it: the same ``aggregate`` that
feeds the minute windows gives the counters, sums and maps, and the latency sketches become
ClickHouse ``quantilesDD`` states (sql/ddsketch_state.py) of the same inputs, in µs
like the view had them. The hour and day views still chain from ``spans_minute``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from spanline.sql.ddsketch_state import clickhouse_keys, encode_states
from spanline.windows.aggregate import (
    ALERT_ONLY_MAPS,
    COUNTS,
    DIMENSIONS,
    MAPS,
    SUMS,
    Partials,
    SketchInputs,
    aggregate_with_inputs,
)

#: Rollup sketch column -> (aggregated input, factor to the stored unit): latency in µs
#: (ClickHouse's quantilesDD is accurate for values >= 1 only, sql/migrations/0003).
SKETCH_COLUMNS: dict[str, tuple[str, float]] = {
    "duration_us_sketch": ("duration_ms", 1000.0),
    "ttft_us_sketch": ("ttft_ms", 1000.0),
    "tpot_us_sketch": ("tpot_ms", 1000.0),
    "input_tokens_sketch": ("input_tokens", 1.0),
}
#: Suffix of a rollup insert's deduplication token after the raw insert's token.
TOKEN_SUFFIX = "/minute"


@dataclass(frozen=True)
class MinuteBlock:
    """The ``spans_minute`` rows of some stored spans, and the partials they were made from
    (which the stream windows take as they are instead of aggregating the rows again)."""

    table: pa.Table
    partials: Partials


def minute_rollup(rows: pd.DataFrame) -> MinuteBlock:
    """The ``spans_minute`` block of stored span rows: one row per grain group and minute."""
    partials, codes, inputs = aggregate_with_inputs(rows)
    columns: dict[str, pa.Array] = {name: pa.array(partials.groups[name], pa.string()) for name in DIMENSIONS}
    columns["minute"] = pa.array(partials.groups["minute"].to_numpy(dtype=np.int64), pa.timestamp("s", tz="UTC"))
    for name in COUNTS:
        columns[name] = pa.array(partials.counters[name].to_numpy(dtype=np.uint64))
    for name in SUMS:
        columns[name] = pa.array(partials.counters[name].to_numpy(dtype=np.float64))
    columns |= _map_columns(partials)
    columns |= _sketch_columns(codes, inputs, len(partials.groups))
    return MinuteBlock(pa.table(columns), partials)


def _map_columns(partials: Partials) -> dict[str, pa.Array]:
    """Map(String, UInt64 | Float64) per MAPS entry the rollups store (not ALERT_ONLY_MAPS), from
    the partials' long (group, map, key, value) frame."""
    groups = len(partials.groups)
    maps = partials.maps.sort_values(["map", "group"], kind="stable")
    which = maps["map"].to_numpy()
    out = {}
    for index, (name, counts) in enumerate(MAPS.items()):
        if name in ALERT_ONLY_MAPS:
            continue
        chosen = maps.loc[which == index]
        sizes = np.bincount(chosen["group"].to_numpy(dtype=np.int64), minlength=groups)
        offsets = pa.array(np.concatenate(([0], np.cumsum(sizes))).astype(np.int32))
        values = chosen["value"].to_numpy(dtype=np.float64)
        items = pa.array(np.rint(values).astype(np.uint64)) if counts else pa.array(values)
        out[name] = pa.MapArray.from_arrays(offsets, pa.array(chosen["key"], pa.string()), items)
    return out


def _sketch_columns(codes: npt.NDArray[np.int64], inputs: SketchInputs, groups: int) -> dict[str, pa.Array]:
    """One quantilesDD state per group for each rollup sketch, from the values the windows'
    sketches take (scaled to the rollup's unit)."""
    out = {}
    for column, (name, factor) in SKETCH_COLUMNS.items():
        mask, values = inputs[name]
        sign, key = clickhouse_keys(values[mask] * factor)
        group = codes[mask]
        low = int(key.min()) if len(key) else 0
        width = int(key.max()) - low + 1 if len(key) else 1
        bins, counts = np.unique((group * 3 + sign + 1) * width + (key - low), return_counts=True)
        states = encode_states(
            bins // (3 * width),
            (bins // width % 3 - 1).astype(np.int8),
            bins % width + low,
            counts.astype(np.float64),
            groups,
        )
        out[column] = pa.array(states, pa.binary())
    return out
