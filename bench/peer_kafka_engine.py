"""Spanline's worker against ClickHouse's own Kafka engine + materialized view, same spans, same tables.

N spans of the simulator's workload (500 per message) are produced once into ``spans`` on an
embedded tansu broker. Then, one after the other so neither takes CPU from the other:

1. Spanline's worker (one process, its defaults) stores them in a fresh chDB: decode,
   validate, drop re-sends, derive, price with the catalog's history, insert with the ingest
   ledger, rollup MVs, minute windows to ``metrics``, alert evaluation.
2. The peer (bench/kafka_engine_peer.py, a process of its own) reads the same topic in its
   own consumer group through a Kafka engine table and one materialized view into an
   identically migrated chDB: defaults, derived fields and costs in SQL, same rollup MVs.

Each path's figure: spans / (process start -> all N rows visible), and the steady rate from the
first rows visible to the last (after start-up and the consumer-group join). Both ``spans``
tables are then compared column by column in key order (ingested_at aside); any difference
is printed and makes the exit status 1. Floors measured on the same spans: orjson decode,
a kafka-python consumer reading the topic, and ``process_batch`` alone, on one core.

    python bench/peer_kafka_engine.py --spans 300000
"""

from __future__ import annotations

import argparse
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from kafka import KafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.embedded import BenchStack, bench_stack
from bench.kafka_engine_peer import wait_until_stored
from bench.pipeline_throughput import spans_for
from bench.report import publish
from spanline.kafka.publish import SpanPublisher, encode_spans
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.pricing.layout import RATE_KEYS, rate_column, tier_columns, tier_slots
from spanline.streams.process import process_batch

PEER = Path(__file__).with_name("kafka_engine_peer.py")
NAME_KEYS = ("provider", "model_response", "model_requested")


def price_table(spans: list[dict[str, object]], catalog: PriceCatalog) -> pd.DataFrame:
    """The peer's price table: for each model-name triple the spans use, the catalog's price
    history of the series it resolves to (genai-prices' name matching stays in Python: this is
    the mapping a ClickHouse user would maintain by hand)."""
    names = pd.DataFrame(spans, columns=list(NAME_KEYS)).fillna("").drop_duplicates()
    table = catalog.table
    slots = tier_slots(list(table.columns))
    rates = [rate_column(key) for key in RATE_KEYS]
    rates += [column for key in RATE_KEYS for slot in range(1, slots + 1) for column in tier_columns(key, slot)]
    parts = []
    for provider, response, requested in names.itertuples(index=False):
        history = table[table["series"] == catalog.catalog_series(provider, response, requested)]
        if history["daily_from"].notna().any():
            raise SystemExit(f"{provider}/{response or requested} has daily price windows, which the peer's SQL lacks")
        parts.append(
            history.loc[:, ["valid_from", *rates, "request_usd", "source", "version"]].assign(
                provider=provider, model_response=response, model_requested=requested, priced=1
            )
        )
    prices = pd.concat(parts, ignore_index=True)
    prices["valid_from"] = prices["valid_from"].fillna(pd.Timestamp(0, tz="UTC")).astype("datetime64[ms, UTC]")
    prices["priced"] = prices["priced"].astype("uint8")
    return prices


def arrow_keeping_nan(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as Arrow with NaN kept as NaN (a rate the price lacks), not turned into null."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for index, name in enumerate(table.column_names):
        if pa.types.is_floating(table.schema.field(name).type):
            table = table.set_column(index, name, pa.array(frame[name].to_numpy()))
    return table


def run_worker(stack: BenchStack, count: int) -> dict[str, float]:
    """Start one worker on the produced topic; wall-clock instants until it stored ``count``."""
    started = time.time()
    stack.start_workers(1)
    timings = wait_until_stored(count, stack.stored)
    stack.stop_workers()
    return {"started": started, **timings}


def rates(timings: dict[str, float], count: int) -> tuple[float, float, float]:
    """(seconds from start to all stored, spans/s over them, spans/s from the first rows visible
    to the last; NaN when the first rows visible were all of them)."""
    total = timings["done"] - timings["started"]
    after_first = timings["done"] - timings["first_at"]
    steady = (count - timings["first_rows"]) / after_first if timings["first_rows"] < count else float("nan")
    return total, count / total, steady


def rounded(value: float, digits: int = 0) -> float | int | None:
    """A figure for the table; None (null in the JSON) for a rate a run could not measure."""
    if math.isnan(value):
        return None
    return round(value, digits) if digits else round(value)


def compare(worker_rows: pa.Table, peer_rows: pa.Table) -> dict[str, int]:
    """Rows differing per column (both tables in the same key order); empty when identical."""
    if worker_rows.num_rows != peer_rows.num_rows:
        return {"(row count)": abs(worker_rows.num_rows - peer_rows.num_rows)}
    differing = {}
    for name in worker_rows.column_names:
        ours, theirs = worker_rows.column(name), peer_rows.column(name)
        if not ours.equals(theirs):
            differing[name] = sum(a != b for a, b in zip(ours.to_pylist(), theirs.to_pylist(), strict=True))
    return differing


def messages(spans: list[dict[str, object]], per_message: int = 500) -> list[bytes]:
    return [encode_spans(spans[start : start + per_message]) for start in range(0, len(spans), per_message)]


def orjson_floor(values: list[bytes], count: int) -> float:
    started = time.perf_counter()
    for value in values:
        orjson.loads(value)
    return count / (time.perf_counter() - started)


def process_batch_floor(values: list[bytes], count: int, batch_messages: int = 200) -> float:
    """``process_batch`` alone (decode, validate, derive, price, Arrow), no Kafka, no insert."""
    catalog = PriceCatalog.load()
    stamp = int(time.time() * 1000)
    batches = [
        Batch(
            0,
            start,
            min(start + batch_messages, len(values)) - 1,
            [
                Message(0, offset, values[offset], "bench", stamp)
                for offset in range(start, min(start + batch_messages, len(values)))
            ],
            replayed=False,
        )
        for start in range(0, len(values), batch_messages)
    ]
    started = time.perf_counter()
    for batch in batches:
        process_batch(batch, "spans", catalog)
    return count / (time.perf_counter() - started)


def consumer_floor(bootstrap: str, topic: str, count: int) -> float:
    """A kafka-python consumer reading every message of ``topic`` (values not decoded)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=10_000)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    remaining = sum(consumer.end_offsets(partitions).values())
    started = time.perf_counter()
    while remaining > 0:
        remaining -= sum(len(records) for records in consumer.poll(timeout_ms=1000).values())
    elapsed = time.perf_counter() - started
    consumer.close()
    return count / elapsed


def measure(count: int, partitions: int) -> tuple[dict[str, object], dict[str, int]]:
    """Both paths on the same ``count`` spans: the figures, and the rows differing per column."""
    spans = spans_for(count)
    with bench_stack(partitions=partitions) as stack:
        topic = stack.settings.topic_spans
        publisher = SpanPublisher(stack.bootstrap_servers, topic)
        publisher.send(spans, "bench")
        publisher.flush()
        publisher.close()
        worker = run_worker(stack, len(spans))
        worker_db = stack.workers[0].settings.resolved_clickhouse_url.removeprefix("chdb://")
        subprocess.run(
            [sys.executable, str(PEER), "export", "--path", worker_db, "--out", str(stack.root / "worker.parquet")],
            check=True,
        )
        pq.write_table(arrow_keeping_nan(price_table(spans, PriceCatalog.load())), stack.root / "prices.parquet")
        consumed = subprocess.run(
            [
                sys.executable,
                str(PEER),
                "consume",
                *("--path", str(stack.root / "peer" / "clickhouse")),
                *("--bootstrap", stack.bootstrap_servers, "--topic", topic, "--spans", str(len(spans))),
                *("--prices", str(stack.root / "prices.parquet"), "--out", str(stack.root / "peer.parquet")),
            ],
            check=True,
            stdout=subprocess.PIPE,
        )
        peer = orjson.loads(consumed.stdout.splitlines()[-1])
        consumer_rate = consumer_floor(stack.bootstrap_servers, topic, len(spans))
        root = stack.root
    values = messages(spans)
    worker_rows = pq.read_table(root / "worker.parquet")
    differing = compare(worker_rows, pq.read_table(root / "peer.parquet"))
    worker_total, worker_rate, worker_steady = rates(worker, len(spans))
    peer_total, peer_rate, peer_steady = rates(peer, len(spans))
    figures: dict[str, object] = {
        "spans": len(spans),
        "partitions": partitions,
        "worker_start_to_stored_s": round(worker_total, 2),
        "worker_spans_per_s": round(worker_rate),
        "worker_after_first_rows_spans_per_s": rounded(worker_steady),
        "peer_start_to_stored_s": round(peer_total, 2),
        "peer_spans_per_s": round(peer_rate),
        "peer_after_first_rows_spans_per_s": rounded(peer_steady),
        "peer_after_join_spans_per_s": round(len(spans) / (peer["done"] - peer["joined_at"])),
        "peer_over_worker": round(peer_rate / worker_rate, 2),
        "peer_over_worker_after_first_rows": rounded(peer_steady / worker_steady, 2),
        "floor_orjson_decode_spans_per_s": round(orjson_floor(values, len(spans))),
        "floor_kafka_python_consume_spans_per_s": round(consumer_rate),
        "floor_process_batch_spans_per_s": round(process_batch_floor(values, len(spans))),
        "columns_compared": worker_rows.num_columns,
        "columns_differing": len(differing),
    }
    return figures, differing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=300_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the catalog's "no price for selfhosted/..." lines, once per load
    figures, differing = measure(args.spans, args.partitions)
    publish("peer_kafka_engine", figures)
    if differing:
        for name, rows in differing.items():
            print(f"DIFFERENT  {name}: {rows} of {args.spans} rows")
        sys.exit(1)
    print(f"identical  every compared column of all {args.spans} rows (ingested_at aside)")


if __name__ == "__main__":
    main()
