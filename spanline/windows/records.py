"""One closed (partition, minute) window as a Kafka message on the ``metrics`` topic.

The value is orjson, column-oriented so that a window of a few hundred groups stays a few
tens of kilobytes: group key and counter columns as arrays, maps and sketch bins as long
tables whose ``group`` column indexes the group arrays and whose ``map``/``sketch`` columns
index the ``map_names``/``sketch_names`` lists sent with the record. Sketch bins are DDSketch bucket keys
(LogarithmicMapping, relative accuracy 0.01) with counts, plus each sketch's exact sum/min/max.
The key is ``"partition:minute"`` (minute as epoch seconds), the record's identity: a window
is emitted once, and a re-emission after a crash carries the same key and content.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd

from spanline.windows.aggregate import (
    BIN_COLUMNS,
    COUNTS,
    DIMENSIONS,
    MAP_COLUMNS,
    MAPS,
    SKETCHES,
    STAT_COLUMNS,
    SUMS,
    Partials,
)

MAP_NAMES: tuple[str, ...] = tuple(MAPS)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class WindowRecord:
    partition: int
    minute: int  # UTC minute start, epoch seconds
    through_offset: int  # every offset of the partition up to here was aggregated (or was late)
    high_ms: int  # latest span start_time the partition had seen, epoch ms
    watermark_ms: int  # high_ms - allowed lateness when the window closed
    late_spans: int  # spans that arrived for already-closed minutes since the previous record
    partials: Partials

    @property
    def key(self) -> bytes:
        return f"{self.partition}:{self.minute}".encode()

    @property
    def spans(self) -> int:
        return int(self.partials.counters["spans"].sum())


def encode(record: WindowRecord) -> bytes:
    partials = record.partials
    body = {
        "version": FORMAT_VERSION,
        "partition": record.partition,
        "minute": record.minute,
        "through_offset": record.through_offset,
        "high_ms": record.high_ms,
        "watermark_ms": record.watermark_ms,
        "late_spans": record.late_spans,
        "groups": {name: partials.groups[name].tolist() for name in DIMENSIONS}
        | {name: partials.counters[name].tolist() for name in (*COUNTS, *SUMS)},
        "map_names": list(MAP_NAMES),
        "sketch_names": list(SKETCHES),
        "maps": {name: partials.maps[name].tolist() for name in MAP_COLUMNS},
        "bins": {name: partials.bins[name].tolist() for name in BIN_COLUMNS},
        "stats": {name: partials.stats[name].tolist() for name in STAT_COLUMNS},
    }
    return orjson.dumps(body)


def decode(value: bytes) -> WindowRecord:
    body = orjson.loads(value)
    if body.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported metrics record version {body.get('version')!r} (expected {FORMAT_VERSION})")
    groups = pd.DataFrame({name: pd.Series(body["groups"][name], dtype=object) for name in DIMENSIONS})
    groups["minute"] = np.full(len(groups), body["minute"], dtype=np.int64)
    # counters added since version 1 (first_attempt_*) read 0 in records written before them
    zeros = [0] * len(groups)
    counters = pd.DataFrame(
        {name: pd.Series(body["groups"].get(name, zeros), dtype="int64") for name in COUNTS}
        | {name: pd.Series(body["groups"][name], dtype="float64") for name in SUMS}
    )
    maps = pd.DataFrame(
        {
            "group": pd.Series(body["maps"]["group"], dtype="int64"),
            "map": _positions(body["maps"]["map"], body["map_names"], MAP_NAMES),
            "key": pd.Series(body["maps"]["key"], dtype=object),
            "value": pd.Series(body["maps"]["value"], dtype="float64"),
        }
    )
    bins = pd.DataFrame(
        {
            "group": pd.Series(body["bins"]["group"], dtype="int64"),
            "sketch": _positions(body["bins"]["sketch"], body["sketch_names"], SKETCHES),
            "sign": pd.Series(body["bins"]["sign"], dtype="int8"),
            "key": pd.Series(body["bins"]["key"], dtype="int64"),
            "count": pd.Series(body["bins"]["count"], dtype="int64"),
        }
    )
    stats = pd.DataFrame(
        {
            "group": pd.Series(body["stats"]["group"], dtype="int64"),
            "sketch": _positions(body["stats"]["sketch"], body["sketch_names"], SKETCHES),
            **{name: pd.Series(body["stats"][name], dtype="float64") for name in ("sum", "min", "max")},
        }
    )
    return WindowRecord(
        partition=int(body["partition"]),
        minute=int(body["minute"]),
        through_offset=int(body["through_offset"]),
        high_ms=int(body["high_ms"]),
        watermark_ms=int(body["watermark_ms"]),
        late_spans=int(body["late_spans"]),
        partials=Partials(groups, counters, maps, bins, stats),
    )


def _positions(values: list[int], sent: list[str], names: tuple[str, ...]) -> pd.Series:
    """Positions in the sender's name list, as positions in ours (the lists travel by name)."""
    index = {name: position for position, name in enumerate(names)}
    try:
        translate = np.array([index[name] for name in sent], dtype=np.int8)
    except KeyError as exc:
        raise ValueError(f"unknown map or sketch {exc.args[0]!r} in a metrics record") from exc
    return pd.Series(translate[np.asarray(values, dtype=np.int64)] if values else [], dtype="int8")
