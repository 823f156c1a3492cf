"""CPU per span of storing a batch with its rollups: the retired view vs the worker's writer.

Before migration 0010, ``spans_minute_mv`` aggregated every raw insert inside ClickHouse; now
the worker builds the minute block itself (streams/rollup.py: the windows' aggregation plus
quantilesDD states encoded in numpy) and inserts it right after the raw block. Both variants
run here on the same simulator batches into one chDB (in-process, so the process's CPU time
includes ClickHouse's): "view" = raw insert with the view re-created from migration 0003's
text; "writer" = raw insert + ``minute_rollup`` + its insert. The hour and day views run in
both. Before, the minute windows also aggregated every stored batch (``aggregate``); now they
take the writer's partials, so "before" = view insert + ``aggregate``, "after" = the writer.
CPU time, not wall time, so other processes on a shared machine move the figures less.
Prints a table and writes bench/results/minute_rollup.json.

    python bench/minute_rollup.py --spans 200000 --batch 20000
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spanline.simulator.workload import WorkloadConfig, generate_traces
from spanline.sql.client import connect
from spanline.sql.migrate import MIGRATIONS_DIR, apply_migrations
from spanline.sql.templates import render
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import RowsPart, process_batch
from spanline.streams.rollup import TOKEN_SUFFIX, minute_rollup
from spanline.streams.sinks import DEDUP_SETTINGS
from spanline.windows.aggregate import aggregate

RESULTS = Path(__file__).with_name("results")


def batches(spans: int, per_batch: int) -> list[RowsPart]:
    """The simulator's spans, 500 per message, cut into batches and processed as the worker does."""
    config = WorkloadConfig(start=datetime.now(UTC) - timedelta(minutes=30), duration_s=1800, requests_per_s=400)
    chunks = [chunk for chunk in generate_traces(config) if chunk]
    flat = [span for chunk in chunks for span in chunk][:spans]
    catalog = PriceCatalog.load(None)
    parts = []
    for first in range(0, len(flat), per_batch):
        chunk = flat[first : first + per_batch]
        messages = [
            Message(0, i, orjson.dumps(chunk[s : s + 500]), "bench") for i, s in enumerate(range(0, len(chunk), 500))
        ]
        processed = process_batch(Batch(0, 0, len(messages) - 1, messages, False), "spans", catalog)
        parts += processed.parts
    return parts


def retired_view(database: str) -> str:
    """``spans_minute_mv`` as migration 0003 created it."""
    sql = render((MIGRATIONS_DIR / "0003_rollups.sql").read_text(), {"database": database})
    found = re.search(r"(CREATE MATERIALIZED VIEW IF NOT EXISTS \S+\.spans_minute_mv TO .*?);", sql, re.S)
    assert found
    return found.group(1)


def cpu(step: Callable[[], None]) -> float:
    started = time.process_time()
    step()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20_000, help="spans per worker batch")
    args = parser.parse_args()
    parts = batches(args.spans, args.batch)
    spans = sum(len(part.rows) for part in parts)
    spent = {"view": 0.0, "writer": 0.0, "writer_build": 0.0, "aggregate": 0.0}
    with tempfile.TemporaryDirectory() as home:
        client = connect(f"chdb://{home}/chdb")
        for database in ("view", "writer"):
            apply_migrations(client, database, ttl_days=30)
        client.command(retired_view("view"))
        for index, part in enumerate(parts):
            settings = {**DEDUP_SETTINGS, "insert_deduplication_token": f"spans:bench:0:{index}"}

            def with_view(part: RowsPart = part, settings: dict[str, object] = settings) -> None:
                client.insert_arrow("view.spans", part.table, settings=settings)

            def with_writer(part: RowsPart = part, settings: dict[str, object] = settings) -> None:
                client.insert_arrow("writer.spans", part.table, settings=settings)
                block = minute_rollup(part.rows).table
                token = f"{settings['insert_deduplication_token']}{TOKEN_SUFFIX}"
                client.insert_arrow(
                    "writer.spans_minute", block, settings={**DEDUP_SETTINGS, "insert_deduplication_token": token}
                )

            spent["view"] += cpu(with_view)
            spent["writer"] += cpu(with_writer)
            spent["writer_build"] += cpu(lambda part=part: minute_rollup(part.rows))  # type: ignore[misc]
            spent["aggregate"] += cpu(lambda part=part: aggregate(part.rows))  # type: ignore[misc]
        counts = [client.command(f"SELECT sum(spans) FROM {db}.spans_day") for db in ("view", "writer")]
        client.close()
    assert counts == [spans, spans], counts
    figures = {
        "spans": spans,
        "spans_per_batch": args.batch,
        "before_us_per_span (view insert + windows' aggregate)": round(
            (spent["view"] + spent["aggregate"]) / spans * 1e6, 2
        ),
        "after_us_per_span (raw insert + writer)": round(spent["writer"] / spans * 1e6, 2),
        "view_insert_us_per_span": round(spent["view"] / spans * 1e6, 2),
        "windows_aggregate_us_per_span": round(spent["aggregate"] / spans * 1e6, 2),
        "writer_build_us_per_span (aggregate + states + Arrow)": round(spent["writer_build"] / spans * 1e6, 2),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "minute_rollup.json").write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:>10,}")


if __name__ == "__main__":
    main()
