"""The peer of Spanline's worker: ClickHouse's Kafka table engine + a materialized view, in chDB.

What a ClickHouse user runs instead of a stream worker: a ``Kafka`` engine table reading the
``spans`` topic as JSONEachRow (each message's JSON array gives one row per span), and a
materialized view that fills schema defaults, derives ``duration_ms``, ``end_time``,
``tpot_ms`` and ``error_type`` as streams/derive.py does, prices every span in SQL from a price
table (an ASOF join on the model names and ``start_time``, tiers and cache/reasoning rates as
streams/pricing/costs.py) and inserts into the project's own ``spans`` table, migrated with the
project's migrations, so the same rollup MVs run. No validation, dead letters, re-send
filtering, ingest ledger, windows or alerts.

Run by bench/peer_kafka_engine.py, each command in a process of its own:

    python bench/kafka_engine_peer.py consume --path DIR --bootstrap HOST:PORT --topic spans \
        --spans N --prices prices.parquet --out OUT_DIR
    python bench/kafka_engine_peer.py export --path DIR --out OUT_DIR

chDB 4.4's ``import chdb`` opens and closes an engine to read its version, and closing a
process's last connection shuts down the background pools the Kafka engine consumes on, for
good. ``consume`` therefore loads chDB with that first connection opened on its own database
and kept open (:func:`import_chdb_keeping_engine`).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spanline.contract.columns import FIELD_DEFAULTS
from spanline.contract.schema import TOKEN_FIELDS, Span
from spanline.sql.client import connect
from spanline.sql.migrate import apply_migrations
from spanline.sql.statements import render_statement
from spanline.streams.frame import TABLE_COLUMNS, TEXT_DEFAULTS, ZERO_DEFAULTS
from spanline.streams.pricing.layout import RATE_KEYS, SOURCE_NONE, SOURCE_UNKNOWN, rate_column, tier_columns
from spanline.streams.pricing.snapshot import CATALOG_LABEL

DATABASE = "spanline"  # the worker's database name, so both hold the same tables under the same names
PEER = "peer"  # the Kafka table, the price table and the view
#: A span's identity, and the order both paths' tables are compared in, column by column.
ROW_KEY = "kafka_partition, kafka_offset, trace_id, span_id"
#: The rollups the migrations keep with materialized views on ``spans`` (sql/migrations/0003).
ROLLUPS = ("spans_minute", "spans_hour", "spans_day")
_STATE = re.compile(r"AggregateFunction\((\w+)(\([^)]*\))?, ")
#: Columns that differ by design: when each path stored the row.
NOT_COMPARED = ("ingested_at",)
#: librdkafka's session timeout (ms). tansu makes a group join wait about half of it, so
#: ClickHouse's default (45 s) would hold the first fetch back ~20 s; at 2 s (the worker's on tansu)
#: the engine fell into rebalance storms on a loaded machine, re-reading blocks it had inserted
#: (29 rebalances, 1.3M duplicate rows for 300,000 spans); 6 s (Apache Kafka's minimum) joins
#: in ~3 s without them.
CONFIG_XML = "<clickhouse><kafka><session_timeout_ms>6000</session_timeout_ms></kafka></clickhouse>\n"
#: Whether the Kafka table's consumer has joined its group and holds partitions.
JOINED = (
    f"SELECT count() > 0 FROM system.kafka_consumers WHERE database = '{PEER}' AND notEmpty(assignments.partition_id)"
)
POLL_S = 0.1
_kept: list[Any] = []


def import_chdb_keeping_engine(connection_string: str) -> ModuleType:
    """Import chdb so that the connection its ``__init__`` opens is made to ``connection_string``
    and never closed: the engine then lives as long as this process."""

    class KeepOpen:
        def __init__(self, connection: Any) -> None:
            self._connection = connection

        def __getattr__(self, name: str) -> Any:
            return getattr(self._connection, name)

        def close(self) -> None:
            _kept.append(self._connection)

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
            if name != "chdb._chdb":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            assert spec is not None and spec.loader is not None, "chdb-core's _chdb extension is missing"
            exec_module = spec.loader.exec_module

            def exec_keeping(module: ModuleType) -> None:
                exec_module(module)
                real = module.connect

                def connect_once(*_: object, **__: object) -> KeepOpen:
                    module.connect = real
                    return KeepOpen(real(connection_string))

                module.connect = connect_once

            spec.loader.exec_module = exec_keeping  # type: ignore[method-assign]  # wrapping the stdlib loader
            return spec

    if "chdb" in sys.modules:
        raise RuntimeError("chdb was imported before import_chdb_keeping_engine: its Kafka engine is shut down")
    sys.meta_path.insert(0, Finder())
    import chdb

    return chdb


def queue_type(spans_column_type: str) -> str:
    """A span field's column type in the Kafka table: the spans column's, admitting JSON nulls."""
    inner = spans_column_type
    if inner.startswith("LowCardinality("):
        inner = inner[len("LowCardinality(") : -1]
    if inner.startswith(("Nullable(", "Array(", "Map(")):
        return inner
    return f"Nullable({inner})"


def literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def filled(name: str) -> str:
    """A span field with the default the worker gives it when absent (streams/frame.py)."""
    default = FIELD_DEFAULTS.get(name)
    if name in TEXT_DEFAULTS:
        return f"coalesce(q.{name}, '')"
    if name in ZERO_DEFAULTS:
        return f"coalesce(q.{name}, 0)"
    if default is not None and not isinstance(default, list | dict):
        return f"coalesce(q.{name}, {literal(default)})"
    return f"q.{name}"


def rate(key: str, tiers: int) -> str:
    """Per-MTok rate of ``key``, the tier chosen by total input tokens (streams/pricing/costs.py)."""
    expression = f"p.{rate_column(key)}"
    for slot in range(1, tiers + 1):
        above, tier_rate = tier_columns(key, slot)
        expression = f"if(s.input_tokens > p.{above}, p.{tier_rate}, {expression})"
    return expression


def view_sql(tiers: int) -> str:
    """The materialized view from the Kafka table into ``spans``: defaults, derived fields, costs."""
    kafka_columns = {
        "source": "_headers.value[indexOf(_headers.name, 'spanline-source')]",
        "kafka_topic": "_topic",
        "kafka_partition": "_partition",
        "kafka_offset": "_offset",
        "kafka_timestamp": "assumeNotNull(_timestamp_ms)",
    }
    measured_ms = "(toUnixTimestamp64Milli(q.end_time) - toUnixTimestamp64Milli(q.start_time)) / 1000 * 1000"
    derived_first = {
        "duration_ms": f"coalesce(q.duration_ms, {measured_ms})",
        "error_type": "if(coalesce(q.status, 'ok') = 'error' AND q.error_type IS NULL, 'other', "
        "coalesce(q.error_type, ''))",
    }
    first = [f"{derived_first.get(name, filled(name))} AS {name}" for name in Span.model_fields]
    first += [f"{expression} AS {name}" for name, expression in kafka_columns.items()]
    first.append("now64(3) AS ingested_at")
    name_keys = ("provider", "model_response", "model_requested")
    has_tokens = "(" + " OR ".join(f"s.{name} > 0" for name in TOKEN_FIELDS) + ")"
    rates = {key: rate(key, tiers) for key in RATE_KEYS}
    input_rate = f"if(isNaN({rates['input']}), 0., {rates['input']})"
    output_rate = f"if(isNaN({rates['output']}), 0., {rates['output']})"

    def own_or(key: str, fallback: str) -> str:
        return f"if(isNaN({rates[key]}), {fallback}, {rates[key]})"

    def tokens(name: str) -> str:
        return f"toFloat64(s.{name})"

    costs = {
        "input_cost_usd": f"({tokens('input_tokens')} - {tokens('cache_read_tokens')} - "
        f"{tokens('cache_write_tokens')}) * peer_input_rate / 1000000.",
        "cache_read_cost_usd": f"{tokens('cache_read_tokens')} * {own_or('cache_read', 'peer_input_rate')} / 1000000.",
        "cache_write_cost_usd": f"{tokens('cache_write_tokens')} * {own_or('cache_write', 'peer_input_rate')} "
        "/ 1000000.",
        "output_cost_usd": f"(({tokens('output_tokens')} - {tokens('reasoning_tokens')}) * peer_output_rate + "
        f"{tokens('reasoning_tokens')} * {own_or('output_reasoning', 'peer_output_rate')}) / 1000000.",
    }
    request = f"if({has_tokens}, p.request_usd, 0.)"
    second = {
        "end_time": "coalesce(s.end_time, fromUnixTimestamp64Milli(toUnixTimestamp64Milli(s.start_time) + "
        "toInt64(floor(s.duration_ms)), 'UTC'))",
        "tpot_ms": "if(s.ttft_ms IS NOT NULL AND s.output_tokens > 1 AND s.duration_ms >= s.ttft_ms, "
        "(s.duration_ms - s.ttft_ms) / (toFloat64(s.output_tokens) - 1), NULL)",
        **{name: f"if(p.priced, peer_{name}, 0.)" for name in costs},
        "cost_usd": "if(p.priced, " + " + ".join(f"peer_{name}" for name in costs) + f" + {request}, 0.)",
        "cost_known": f"p.priced OR NOT {has_tokens}",
        "price_source": f"if(p.priced, p.source, if({has_tokens}, {literal(SOURCE_UNKNOWN)}, {literal(SOURCE_NONE)}))",
        "price_version": f"if(p.priced, p.version, if({has_tokens}, {literal(CATALOG_LABEL)}, ''))",
        "price_entry": "if(p.priced, p.entry, '')",
    }
    helpers = [f"{input_rate} AS peer_input_rate", f"{output_rate} AS peer_output_rate"]
    helpers += [f"{expression} AS peer_{name}" for name, expression in costs.items()]
    outer = [f"{second.get(name, f's.{name}')} AS {name}" for name in TABLE_COLUMNS]
    join_on = " AND ".join(f"s.{name} = p.{name}" for name in name_keys)
    return (
        f"CREATE MATERIALIZED VIEW {PEER}.spans_from_kafka TO {DATABASE}.spans AS\n"
        f"WITH {', '.join(helpers)}\n"
        f"SELECT {', '.join(outer)}\n"
        f"FROM (SELECT {', '.join(first)} FROM {PEER}.spans_queue AS q) AS s\n"
        f"ASOF LEFT JOIN {PEER}.prices AS p ON {join_on} AND s.start_time >= p.valid_from"
    )


def consume(args: argparse.Namespace) -> dict[str, float]:
    """Set the peer up on a fresh chDB, let it consume ``--spans`` spans; wall-clock instants."""
    started = time.time()
    args.path.mkdir(parents=True, exist_ok=True)
    config = args.path.parent / "peer-config.xml"
    config.write_text(CONFIG_XML)
    import_chdb_keeping_engine(f"{args.path}?config-file={config}")
    client = connect(f"chdb://{args.path}")
    apply_migrations(client, DATABASE, ttl_days=30)  # SPANLINE_RAW_TTL_DAYS, as the worker has it
    # the peer rolls up as ClickHouse users do, by a view on the raw table (the worker writes it)
    client.command(
        f"CREATE MATERIALIZED VIEW {DATABASE}.spans_minute_mv TO {DATABASE}.spans_minute"
        f" AS {render_statement('minute_rollup_select', database=DATABASE)}"
    )
    client.command(f"CREATE DATABASE {PEER}")
    client.command(
        f"CREATE TABLE {PEER}.prices ENGINE = Memory AS SELECT * FROM file('{args.prices}', Parquet) "
        "SETTINGS schema_inference_make_columns_nullable = 0"
    )
    tiers = int(
        client.command(
            f"SELECT count() FROM system.columns WHERE database = '{PEER}' "
            f"AND table = 'prices' AND name LIKE '{RATE_KEYS[0]}\\_tier%\\_above'"
        )
    )
    types = dict(
        client.query(
            f"SELECT name, type FROM system.columns WHERE database = '{DATABASE}' AND table = 'spans'"
        ).result_rows
    )
    columns = ", ".join(f"{name} {queue_type(types[name])}" for name in Span.model_fields)
    client.command(
        f"CREATE TABLE {PEER}.spans_queue ({columns}) ENGINE = Kafka SETTINGS "
        f"kafka_broker_list = '{args.bootstrap}', kafka_topic_list = '{args.topic}', "
        f"kafka_group_name = 'spanline-peer', kafka_format = 'JSONEachRow', kafka_num_consumers = 1, "
        # the worker's batch bounds: 200 messages of 500 spans, or 0.5 s
        "kafka_max_block_size = 100000, kafka_flush_interval_ms = 500, "
        "date_time_input_format = 'best_effort'"
    )
    client.command(view_sql(tiers))

    def distinct_spans() -> int:
        """Rows in ``spans``, and once they reach the goal, the distinct spans among them: the
        Kafka engine is at-least-once, so a re-read block can reach the count early."""
        rows = int(client.command(f"SELECT count() FROM {DATABASE}.spans"))
        return rows if rows < args.spans else int(client.command(f"SELECT uniqExact({ROW_KEY}) FROM {DATABASE}.spans"))

    timings = wait_until_stored(args.spans, distinct_spans, lambda: bool(client.command(JOINED)))
    duplicates = int(client.command(f"SELECT count() - uniqExact({ROW_KEY}) FROM {DATABASE}.spans"))
    rebalances = int(
        client.command(f"SELECT sum(num_rebalance_revocations) FROM system.kafka_consumers WHERE database = '{PEER}'")
    )
    export(client, args.out)
    return {"started": started, **timings, "duplicates": duplicates, "rebalances": rebalances}


def wait_until_stored(
    count: int, stored: Callable[[], int], joined: Callable[[], bool] | None = None
) -> dict[str, float]:
    """Poll until ``count`` rows are stored; wall-clock instants of the group join (when
    ``joined`` can tell), of the first rows visible and of the last, and the first rows' count."""
    joined_at, first_at, first_rows, rows = 0.0, 0.0, 0, 0
    while rows < count:
        time.sleep(POLL_S)
        if joined is not None and not joined_at and joined():
            joined_at = time.time()
        rows = stored()
        if rows and not first_rows:
            first_at, first_rows = time.time(), rows
    return {"joined_at": joined_at or first_at, "first_at": first_at, "first_rows": first_rows, "done": time.time()}


def export(client: Any, out: Path) -> None:
    """``spans`` and its rollups as Parquet files in ``out``, for comparing the two paths.

    ``spans`` in key order, each span once (a re-read copy is identical but for ingested_at),
    without the columns that differ by design; each rollup one row per group, its parts merged
    and its sketch states turned into their quantiles."""
    out.mkdir(parents=True, exist_ok=True)
    spans = f"SELECT * EXCEPT ({', '.join(NOT_COMPARED)}) FROM {DATABASE}.spans ORDER BY {ROW_KEY} LIMIT 1 BY {ROW_KEY}"
    queries = {"spans": spans, **{rollup: merged_rollup(client, rollup) for rollup in ROLLUPS}}
    for table, query in queries.items():
        # chDB writes the file itself: clickhouse-connect's chdb Arrow reader garbled the last
        # chunks of a 300,000-row result (nulls in NOT NULL columns) in one run
        client.command(f"INSERT INTO FUNCTION file('{out / table}.parquet', 'Parquet') {query}")


def merged_rollup(client: Any, table: str) -> str:
    """A query reading ``table`` (an AggregatingMergeTree) with every group merged into one row."""
    columns = client.query(
        f"SELECT name, type FROM system.columns WHERE database = '{DATABASE}' AND table = '{table}' ORDER BY position"
    ).result_rows
    keys, values = [], []
    for name, column_type in columns:
        if column_type.startswith("SimpleAggregateFunction("):
            function = column_type.removeprefix("SimpleAggregateFunction(").split(",")[0]
            values.append(f"{function}(r.{name}) AS {name}")
        elif state := _STATE.match(column_type):
            values.append(f"{state[1]}Merge{state[2] or ''}(r.{name}) AS {name}")
        else:
            keys.append(name)
    grouping = ", ".join(keys)
    return (
        f"SELECT {grouping}, {', '.join(values)} FROM {DATABASE}.{table} AS r GROUP BY {grouping} ORDER BY {grouping}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("consume", help="consume the topic through the Kafka engine + MV, print timings")
    run.add_argument("--path", type=Path, required=True)
    run.add_argument("--bootstrap", required=True)
    run.add_argument("--topic", required=True)
    run.add_argument("--spans", type=int, required=True)
    run.add_argument("--prices", type=Path, required=True)
    run.add_argument("--out", type=Path, required=True)
    dump = commands.add_parser("export", help="write a chDB database's spans table and rollups as Parquet")
    dump.add_argument("--path", type=Path, required=True)
    dump.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "consume":
        print(orjson.dumps(consume(args)).decode(), flush=True)
    else:
        export(connect(f"chdb://{args.path}"), args.out)


if __name__ == "__main__":
    main()
