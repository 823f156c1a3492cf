"""CPU cost of one worker batch, stage by stage, on one core: where ``process_batch`` spends its time.

Times the simulator's spans (500 per message, 20 messages per batch) through each step of
streams/process.py in CPU time (best of N rounds, so other load on the machine inflates the
figures less than wall time would), and the slow path — orjson + pydantic, what every message
took before the fast path — for the same batch. Also times window aggregation of the rows.
Prints a table and writes bench/results/process_cost.json.

    python bench/process_cost.py --rounds 7

Before/after a change: run the same command on both checkouts, interleaved, on the same input
(``--messages``/``--spans-per-message``); the step names say which steps a change replaced.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from spanline.contract.column_checks import refused
from spanline.contract.columns import record_columns
from spanline.contract.records import decode_records
from spanline.simulator.workload import WorkloadConfig, generate_traces
from spanline.streams.batcher import Batch, Message
from spanline.streams.derive import derive
from spanline.streams.frame import columns_to_frame, insert_table, rows_frame
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import _slow_piece, _valid_spans, process_batch
from spanline.windows.aggregate import aggregate

RESULTS = Path(__file__).with_name("results")


def simulator_spans(count: int) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    config = WorkloadConfig(start=datetime(2026, 11, 22, tzinfo=UTC), requests_per_s=200, duration_s=600)
    for chunk in generate_traces(config):
        spans += chunk
        if len(spans) >= count:
            break
    return spans[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--spans-per-message", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    per = args.spans_per_message
    spans = simulator_spans(args.messages * per)
    count = len(spans)
    values = [orjson.dumps(spans[i : i + per]) for i in range(0, count, per)]
    messages = [Message(0, i, value, "bench", 1) for i, value in enumerate(values)]
    batch = Batch(0, 0, len(messages) - 1, messages, replayed=False)
    catalog = PriceCatalog.load(None)
    figures: dict[str, float] = {}

    def timed(name: str, step: Callable[[], Any]) -> Any:
        best = float("inf")
        result = None
        for _ in range(args.rounds):
            started = time.process_time()
            result = step()
            best = min(best, time.process_time() - started)
        figures[name] = round(best / count * 1e6, 2)
        return result

    records = timed("fast: decode + type-check (msgspec)", lambda: [r for v in values for r in decode_records(v) or []])
    columns = timed("fast: gather Arrow columns", lambda: record_columns(records))
    timed("fast: column checks", lambda: refused(columns))
    frame = timed("columns -> pandas frame", lambda: columns_to_frame(columns))
    derived = timed("derive", lambda: derive(frame))
    prices = timed("price", lambda: catalog.price(derived))
    sources = np.repeat(np.asarray(["bench"], dtype=object), count)
    zeros = np.zeros(count, dtype=np.int64)
    table = timed(
        "Arrow insert table",
        lambda: insert_table(
            columns, derived, prices, source=sources, topic="spans", partition=0, offsets=zeros, timestamps=zeros
        ),
    )
    rows = timed("rows frame (for the aggregation)", lambda: rows_frame(table, columns))
    timed("process_batch (all of the above)", lambda: process_batch(batch, "spans", catalog))
    timed(
        "slow path: decode + validate + columns (orjson, pydantic)",
        lambda: _valid_spans([p for m in messages if (p := _slow_piece(m, "bench", [])[0]) is not None]),
    )
    timed("window aggregation of the rows", lambda: aggregate(rows))
    total = figures["process_batch (all of the above)"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "process_cost.json").write_bytes(
        orjson.dumps({"spans": count, "us_per_span": figures}, option=orjson.OPT_INDENT_2)
    )
    print(f"{count:,} simulator spans, {args.messages} messages, CPU µs per span (best of {args.rounds})")
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value:>7.2f}")
    print(f"  process_batch on one core: {1e6 / total:,.0f} spans/s")


if __name__ == "__main__":
    main()
