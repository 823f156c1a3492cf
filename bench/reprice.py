"""The cost of ``spanline reprice`` (streams/reprice.py) on chDB.

Stores simulated spans (the worker's own processing and insert settings) for ``--hours`` at
``--rate`` requests per second, then reprices them after a correction of gpt-4o-mini's price
(about a tenth of the spans change), and once more (nothing left to change): spans read per
second, spans rewritten, and the time of each run. Writes bench/results/reprice.json.

    python bench/reprice.py --hours 2 --rate 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from clickhouse_connect.driver.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import publish
from spanline.simulator.workload import WorkloadConfig, generate_traces
from spanline.sql.client import connect
from spanline.sql.migrate import apply_migrations
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from spanline.streams.reprice import reprice
from spanline.streams.sinks import DEDUP_SETTINGS

DATABASE = "bench"
CORRECTION = "- provider: openai\n  model: gpt-4o-mini\n  input_mtok: 0.5\n  output_mtok: 2.0\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours of stored spans")
    parser.add_argument("--rate", type=float, default=3.0, help="simulated requests per second")
    parser.add_argument("--chunk-minutes", type=float, default=60.0)
    args = parser.parse_args()
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(hours=args.hours)
    work = Path(tempfile.mkdtemp(prefix="bench-reprice-"))
    client = connect(f"chdb://{work / 'chdb'}")
    try:
        apply_migrations(client, DATABASE, ttl_days=30)
        stored = store(client, start, args.hours, args.rate)
        overrides = work / "overrides.yaml"
        overrides.write_text(CORRECTION, encoding="utf-8")
        catalog = PriceCatalog.load(overrides)
        window = (start, end + timedelta(hours=1))
        figures: dict[str, object] = {"spans stored": stored}
        for label in ("correction", "rerun"):
            began = time.perf_counter()
            result = reprice(client, DATABASE, catalog, *window, chunk=timedelta(minutes=args.chunk_minutes))
            seconds = time.perf_counter() - began
            figures |= {
                f"{label}: spans read": result.spans_read,
                f"{label}: chunks": result.chunks,
                f"{label}: spans rewritten": result.rewritten,
                f"{label}: seconds": round(seconds, 2),
                f"{label}: spans read/s": round(result.spans_read / seconds),
            }
        publish("reprice", figures)
    finally:
        client.close()
        shutil.rmtree(work)


def store(client: Client, start: datetime, hours: float, rate: float) -> int:
    """Simulated spans priced with the bundled catalog and inserted as the worker inserts them."""
    catalog = PriceCatalog.load()
    chunks = [
        chunk
        for chunk in generate_traces(WorkloadConfig(start=start, duration_s=hours * 3600, requests_per_s=rate))
        if chunk
    ]
    messages = [Message(0, offset, orjson.dumps(chunk), "bench") for offset, chunk in enumerate(chunks)]
    stored = 0
    for first in range(0, len(messages), 200):
        part = messages[first : first + 200]
        batch = Batch(0, part[0].offset, part[-1].offset, part, replayed=False)
        rows = process_batch(batch, "spans", catalog).rows
        if rows is not None:
            client.insert_df(
                f"{DATABASE}.spans",
                rows,
                settings={**DEDUP_SETTINGS, "insert_deduplication_token": batch.token("spans", "bench")},
            )
            stored += len(rows)
    return stored


if __name__ == "__main__":
    main()
