"""Spanline's worker against ClickHouse's own Kafka engine + materialized view, same spans, same tables.

N spans of the simulator's workload (500 per message) are produced once into ``spans`` on an
embedded tansu broker. Then, one after the other so neither takes CPU from the other:

1. Spanline's worker (one process, its defaults) stores them in a fresh chDB: decode,
   validate, drop re-sends, derive, price with the catalog's history, insert with the ingest
   ledger, rollup MVs, minute windows to ``metrics``, alert evaluation.
2. The peer (bench/kafka_engine_peer.py, a process of its own) reads the same topic in its
   own consumer group through a Kafka engine table and one materialized view into an
   identically migrated chDB: defaults, derived fields and costs in SQL, same rollup MVs.

Each path's figure: spans / (process start -> all N rows visible), and a steady rate after
start-up and the consumer-group join: the worker's from its first rows visible to the last,
the peer's from its group join (its first batch included) to the last.

Both ``spans`` tables are then compared column by column in key order, each span once
(ingested_at aside; a span's costs within 1e-12 relative: the worker adds each token class's
cost, the peer's SQL multiplies the summed tokens), and so are the three rollups, one row per
group (sums within 1e-9 relative: the paths add the same floats in other orders). A differing value, a missing span
or a span the peer stored twice (the Kafka engine is at-least-once: a block inserted, then
re-read after a rebalance before its offsets were committed) is printed and makes the exit
status 1. Floors measured on the same spans: orjson decode, a kafka-python consumer reading
the topic, and ``process_batch`` alone, on one core.

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
from bench.kafka_engine_peer import ROLLUPS, wait_until_stored
from bench.pipeline_throughput import spans_for
from bench.report import publish
from spanline.kafka.publish import SpanPublisher, encode_spans
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.pricing.layout import RATE_KEYS, rate_column, tier_columns, tier_slots
from spanline.streams.process import process_batch

PEER = Path(__file__).with_name("kafka_engine_peer.py")
NAME_KEYS = ("provider", "model_response", "model_requested")
ROLLUP_REL_TOL = 1e-9
#: A span's cost columns: the same arithmetic in another order (per-class terms vs one product).
SPAN_REL_TOL = 1e-12
#: Ports of this benchmark's broker and worker, apart from the other benchmarks' (bench/embedded.py).
BROKER_PORT = 29492
WORKER_WEB_PORT = 26466


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
            history.loc[:, ["valid_from", *rates, "request_usd", "source", "version", "entry"]].assign(
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
    timings = wait_until_stored(count, stack.stored_reported)
    if (rows := stack.stored()) != count:
        raise SystemExit(f"the worker reported {count} spans stored but its spans table holds {rows}")
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


def compare(ours: pa.Table, theirs: pa.Table, rel_tol: float = 0.0) -> dict[str, int]:
    """Rows differing per column (both tables in the same key order); empty when identical.
    Floats (also inside lists and maps) may differ by ``rel_tol``, relative."""
    if ours.num_rows != theirs.num_rows:
        return {"(row count)": abs(ours.num_rows - theirs.num_rows)}
    differing = {}
    for name in ours.column_names:
        mine, other = ours.column(name), theirs.column(name)
        if not mine.equals(other):
            pairs = zip(mine.to_pylist(), other.to_pylist(), strict=True)
            rows = sum(not same(a, b, rel_tol) for a, b in pairs)
            if rows:
                differing[name] = rows
    return differing


def same(a: object, b: object, rel_tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):  # NaN: the quantile of an empty sketch
        return math.isclose(a, b, rel_tol=rel_tol) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y, rel_tol) for x, y in zip(a, b, strict=True))
    return a == b


def compare_exports(ours: Path, theirs: Path) -> tuple[dict[str, int], int]:
    """Differing rows per ``table.column`` of two ``kafka_engine_peer.py export`` directories,
    and how many rollup rows were compared. Rollup sums may differ by ROLLUP_REL_TOL: the two
    paths insert the same spans in different blocks, so floats are added in another order."""
    differing = {}
    rollup_rows = 0
    for table in ("spans", *ROLLUPS):
        mine = pq.read_table(ours / f"{table}.parquet")
        rel_tol = SPAN_REL_TOL if table == "spans" else ROLLUP_REL_TOL
        rollup_rows += 0 if table == "spans" else mine.num_rows
        for column, rows in compare(mine, pq.read_table(theirs / f"{table}.parquet"), rel_tol).items():
            differing[f"{table}.{column}"] = rows
    return differing, rollup_rows


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
    """Both paths on the same ``count`` spans: the figures, and the rows differing per
    ``table.column`` (empty when both stored the same)."""
    spans = spans_for(count)
    with bench_stack(partitions, broker_port=BROKER_PORT, first_web_port=WORKER_WEB_PORT) as stack:
        topic = stack.settings.topic_spans
        publisher = SpanPublisher(stack.bootstrap_servers, topic)
        publisher.send(spans, "bench")
        publisher.flush()
        publisher.close()
        worker = run_worker(stack, len(spans))
        worker_db = stack.workers[0].settings.resolved_clickhouse_url.removeprefix("chdb://")
        subprocess.run(
            [sys.executable, str(PEER), "export", "--path", worker_db, "--out", str(stack.root / "worker-rows")],
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
                *("--prices", str(stack.root / "prices.parquet"), "--out", str(stack.root / "peer-rows")),
            ],
            check=True,
            stdout=subprocess.PIPE,
        )
        peer = orjson.loads(consumed.stdout.splitlines()[-1])
        consumer_rate = consumer_floor(stack.bootstrap_servers, topic, len(spans))
        root = stack.root
    values = messages(spans)
    differing, rollup_rows = compare_exports(root / "worker-rows", root / "peer-rows")
    worker_total, worker_rate, worker_steady = rates(worker, len(spans))
    peer_total, peer_rate = peer["done"] - peer["started"], len(spans) / (peer["done"] - peer["started"])
    # the Kafka engine's inserts tend to become visible all at once: its steady rate is taken
    # from its group join (system.kafka_consumers), which the worker does not report
    peer_steady = len(spans) / (peer["done"] - peer["joined_at"])
    figures: dict[str, object] = {
        "spans": len(spans),
        "partitions": partitions,
        "worker_start_to_stored_s": round(worker_total, 2),
        "worker_spans_per_s": round(worker_rate),
        "worker_after_first_rows_spans_per_s": rounded(worker_steady),
        "peer_start_to_stored_s": round(peer_total, 2),
        "peer_spans_per_s": round(peer_rate),
        "peer_after_join_spans_per_s": round(peer_steady),
        "peer_duplicate_rows": int(peer["duplicates"]),
        "peer_group_rebalances": int(peer["rebalances"]),
        "peer_over_worker": round(peer_rate / worker_rate, 2),
        "peer_after_join_over_worker_after_first_rows": rounded(peer_steady / worker_steady, 2),
        "floor_orjson_decode_spans_per_s": round(orjson_floor(values, len(spans))),
        "floor_kafka_python_consume_spans_per_s": round(consumer_rate),
        "floor_process_batch_spans_per_s": round(process_batch_floor(values, len(spans))),
        "spans_columns_compared": len(pq.read_schema(root / "worker-rows" / "spans.parquet").names),
        "rollup_rows_compared": rollup_rows,
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
    if figures["peer_duplicate_rows"]:
        print(
            f"DUPLICATES {figures['peer_duplicate_rows']} rows stored twice by the peer (at-least-once: "
            f"{figures['peer_group_rebalances']} rebalance(s) re-read blocks it had inserted)"
        )
    for name, rows in differing.items():
        print(f"DIFFERENT  {name}: {rows} rows")
    if differing or figures["peer_duplicate_rows"]:
        sys.exit(1)
    print(
        f"identical  all {args.spans} spans, every column but ingested_at, and all "
        f"{figures['rollup_rows_compared']} rollup rows (sums within {ROLLUP_REL_TOL:g}, relative)"
    )


if __name__ == "__main__":
    main()
