"""Minute/hour/day rollups (sql/migrations/0003) against a pandas recomputation of the raw rows.

Spans come from the workload generator through the worker's own transformation
(process_batch) and are inserted with the worker's insert settings, so the rollups see
exactly what production writes, including a redelivered batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client

from spanline.contract.schema import TOKEN_FIELDS
from spanline.simulator.workload import WorkloadConfig, generate_traces
from spanline.sql.migrate import apply_migrations
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from tests.support import window_expectations as expect
from tests.support.chdb import migrated_chdb
from tests.support.stored_spans import store_spans

DB = "rollups"
TOPIC = "spans"
#: The grain's columns as the window tests define them from the contract (one definition);
#: errors_by_type is compared per error type below.
DIMENSIONS, COUNTS, COSTS = expect.DIMENSIONS, expect.COUNTS, expect.SUMS
MAPS = {name: spec for name, spec in expect.MAPS.items() if name != "errors_by_type"}
LEVELS = {"minute": "spans_minute", "hour": "spans_hour", "day": "spans_day"}
LEVELS_Q = (0.5, 0.95, 0.99)
#: DDSketch relative accuracy of the rollups' sketches.
ALPHA = 0.01


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with migrated_chdb(tmp_path_factory.mktemp("rollups") / "chdb", DB) as chdb:
        yield chdb


@pytest.fixture(scope="module")
def batches() -> list[tuple[Batch, pd.DataFrame]]:
    """Two consecutive Kafka batches of 20 simulated minutes that straddle an hour and a day
    boundary (today's midnight UTC), processed by the worker's transformation."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    config = WorkloadConfig(start=midnight - timedelta(minutes=10), duration_s=1200, requests_per_s=5)
    chunks = [chunk for chunk in generate_traces(config) if chunk]
    _overflow_contexts(chunks)
    messages = [Message(0, offset, orjson.dumps(chunk), "test") for offset, chunk in enumerate(chunks)]
    half = len(messages) // 2
    catalog = PriceCatalog.load()
    cuts = [Batch(0, 0, half - 1, messages[:half], False), Batch(0, half, len(messages) - 1, messages[half:], False)]
    processed = [(cut, process_batch(cut, TOPIC, catalog)) for cut in cuts]
    assert all(result.rows is not None and not result.dead_letters for _, result in processed)
    return [(cut, result.rows) for cut, result in processed if result.rows is not None]


def _overflow_contexts(chunks: list[list[dict[str, object]]]) -> None:
    """Make a few LLM calls truncate or overflow their context, refuse, or query an index with the
    wrong embedding model: the workload rarely does in 20 minutes."""
    llm_calls = [span for chunk in chunks[::50] for span in chunk if span["kind"] == "llm"]
    for span in llm_calls[0::3]:
        span["context_truncated"] = True
    for span in llm_calls[1::3]:
        span.update(
            status="error", error_type="context_length_exceeded", http_status=400, output_tokens=0, reasoning_tokens=0
        )
    for span in llm_calls[2::3]:
        span.update(status="error", error_type="refusal", output_tokens=0, reasoning_tokens=0)
    retrievals = [span for chunk in chunks[::40] for span in chunk if span["kind"] == "retrieval"]
    for span in retrievals[::2]:
        span.update(embedding_model="text-embedding-3-small", index_embedding_model="text-embedding-3-large")


def _insert(client: Client, cut: Batch, rows: pd.DataFrame, database: str = DB, topic_id: str = "topic-id") -> None:
    """What ClickHouseSpanSink.write and write_rollup do, minus the ledger: same tables, settings
    and tokens."""
    store_spans(client, database, rows, cut.token(TOPIC, topic_id))


def _buckets(rows: pd.DataFrame) -> pd.DataFrame:
    """The raw rows with the rollups' per-span flags and time buckets, computed by pandas."""
    start = rows["start_time"].dt.tz_convert("UTC").dt.tz_localize(None)
    error = rows["status"].eq("error")
    retry = rows["attempt"].gt(0)
    rate_limited = rows["http_status"].eq(429) | rows["error_type"].eq("rate_limited")
    hallucination_eval = rows["kind"].eq("eval") & rows["eval_name"].isin(
        ["faithfulness", "hallucination", "groundedness"]
    )
    recall = rows["kind"].eq("eval") & rows["eval_name"].str.startswith("recall@")
    return pd.DataFrame(
        {
            **{name: rows[name] for name in DIMENSIONS},
            "minute": start.dt.floor("min"),
            "hour": start.dt.floor("h"),
            "day": start.dt.floor("D"),
            "spans": 1,
            "requests": rows["kind"].eq("request"),
            "errors": error,
            "rate_limited": rate_limited,
            "retries": retry,
            "first_attempt_errors": error & ~retry,
            "first_attempt_rate_limited": rate_limited & ~retry,
            "unpriced": rows["cost_known"].eq(0),
            "cache_lookups": rows["kind"].eq("cache"),
            "cache_hits": rows["kind"].eq("cache") & rows["cache_hit"].fillna(False).astype(bool),
            "context_truncations": rows["context_truncated"].astype(bool),
            "context_length_errors": rows["error_type"].eq("context_length_exceeded"),
            "tool_calls": rows["kind"].eq("tool"),
            "tool_errors": rows["kind"].eq("tool") & error,
            "evals": rows["kind"].eq("eval"),
            "evals_passed": rows["kind"].eq("eval") & rows["eval_passed"].fillna(False).astype(bool),
            "successful_requests": rows["kind"].eq("request") & rows["status"].eq("ok"),
            "llm_calls": rows["kind"].eq("llm"),
            "refusals": rows["kind"].eq("llm") & rows["error_type"].eq("refusal"),
            "hallucination_evals": hallucination_eval,
            "hallucinations": hallucination_eval & rows["eval_passed"].eq(False).fillna(False).astype(bool),
            "recall_evals": recall,
            "recall_sum": rows["eval_score"].astype("float64").fillna(0.0).where(recall, 0.0),
            "retrievals": rows["kind"].eq("retrieval"),
            "embedding_mismatches": rows["embedding_model"].ne("")
            & rows["index_embedding_model"].ne("")
            & rows["embedding_model"].ne(rows["index_embedding_model"]),
            "agent_steps": rows["kind"].eq("agent_step"),
            "cache_known": rows["kind"].eq("cache") & rows["cache_hit"].notna(),
            "has_response": rows["kind"].eq("llm") & rows["model_response"].ne(""),
            "has_prompt": rows["prompt_id"].ne(""),
            "prompt": rows["prompt_id"].astype(str) + "@" + rows["prompt_version"].astype(str),
            **{
                name: rows[name]
                for name in ("cache_layer", "model_tier", "routing_reason", "model_response", "tool_name")
            },
            **{name: rows[name] for name in (*TOKEN_FIELDS, "cost_usd")},
            "retry_cost_usd": rows["cost_usd"].where(retry, 0.0),
            "error_type": rows["error_type"].where(error, ""),
            "duration_ms": rows["duration_ms"],
            "ttft_ms": rows["ttft_ms"],
        }
    )


def _naive(times: pd.Series) -> pd.Series:
    """Buckets as naive UTC datetime64[ns], however the client typed them (Date, DateTime('UTC'))."""
    times = pd.to_datetime(times)
    return (times.dt.tz_convert("UTC").dt.tz_localize(None) if times.dt.tz else times).astype("datetime64[ns]")


def _keyed(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``frame`` indexed by ``keys`` as plain object strings and naive times, sorted: comparable
    whether it came from pandas or from the ClickHouse client."""
    frame = frame.reset_index() if frame.index.names != [None] else frame
    frame = frame.astype(
        {key: object for key in keys if key in DIMENSIONS or key in ("error_type", "model", "map_key")}
    )
    for key in keys:
        if key in LEVELS:
            frame[key] = _naive(frame[key])
    return frame.set_index(keys).sort_index()


def _expected(flags: pd.DataFrame, level: str) -> pd.DataFrame:
    keys = [*DIMENSIONS, level]
    return _keyed(flags.groupby(keys)[COUNTS + COSTS].sum().astype({name: "int64" for name in COUNTS}), keys)


def _actual(client: Client, level: str, database: str = DB) -> pd.DataFrame:
    sums = ", ".join(f"sum({name}) AS {name}" for name in COUNTS + COSTS)
    keys = ", ".join([*DIMENSIONS, level])
    frame = client.query_df(f"SELECT {keys}, {sums} FROM {database}.{LEVELS[level]} GROUP BY {keys}")
    return _keyed(frame.astype({name: "int64" for name in COUNTS}), [*DIMENSIONS, level])


def _errors_actual(client: Client, level: str, database: str) -> pd.Series:
    keys = ", ".join([*DIMENSIONS, level])
    frame = client.query_df(
        f"SELECT {keys}, error_type, errors FROM (SELECT {keys}, sumMap(errors_by_type) AS by_type "
        f"FROM {database}.{LEVELS[level]} GROUP BY {keys}) "
        "ARRAY JOIN mapKeys(by_type) AS error_type, mapValues(by_type) AS errors"
    )
    return _keyed(frame, [*DIMENSIONS, level, "error_type"])["errors"].astype("int64")


def _map_actual(client: Client, level: str, database: str, name: str) -> pd.Series:
    keys = ", ".join([*DIMENSIONS, level])
    frame = client.query_df(
        f"SELECT {keys}, map_key, value FROM (SELECT {keys}, sumMap({name}) AS merged "
        f"FROM {database}.{LEVELS[level]} GROUP BY {keys}) "
        "ARRAY JOIN mapKeys(merged) AS map_key, mapValues(merged) AS value"
    )
    if frame.empty:  # a map no stored span filled (the client then returns no columns at all)
        frame = pd.DataFrame(columns=[*DIMENSIONS, level, "map_key", "value"])
    return _keyed(frame, [*DIMENSIONS, level, "map_key"])["value"].astype("float64")


def _map_expected(flags: pd.DataFrame, level: str, name: str) -> pd.Series:
    mask, key, value = MAPS[name]
    chosen = flags[flags[mask].astype(bool)]
    values = chosen[value] if value else pd.Series(1.0, index=chosen.index)
    frame = chosen[[*DIMENSIONS, level]].assign(map_key=chosen[key].astype(object), value=values.astype("float64"))
    summed = frame.groupby([*DIMENSIONS, level, "map_key"])["value"].sum().reset_index()
    return _keyed(summed, [*DIMENSIONS, level, "map_key"])["value"]


def _snapshot(client: Client, database: str) -> dict[str, pd.DataFrame]:
    return {level: _actual(client, level, database) for level in LEVELS}


def _assert_rollups_match(client: Client, rows: pd.DataFrame, database: str = DB) -> None:
    flags = _buckets(rows)
    for level in LEVELS:
        expected = _expected(flags, level)
        actual = _actual(client, level, database)
        assert actual.index.equals(expected.index), level
        pd.testing.assert_frame_equal(actual[COUNTS], expected[COUNTS], check_dtype=False, obj=level)
        pd.testing.assert_frame_equal(actual[COSTS], expected[COSTS], rtol=1e-9, atol=0.0, obj=level)
        by_type = [*DIMENSIONS, level, "error_type"]
        errors = _keyed(flags[flags["errors"]].groupby(by_type).size().rename("errors").reset_index(), by_type)[
            "errors"
        ]
        pd.testing.assert_series_equal(_errors_actual(client, level, database), errors, check_names=False, obj=level)
        for name in MAPS:
            expected_map = _map_expected(flags, level, name)
            actual_map = _map_actual(client, level, database, name)
            assert actual_map.index.equals(expected_map.index), (level, name)
            pd.testing.assert_series_equal(
                actual_map, expected_map, check_names=False, rtol=1e-9, obj=f"{level} {name}"
            )


@pytest.fixture(scope="module")
def loaded(client: Client, batches: list[tuple[Batch, pd.DataFrame]]) -> pd.DataFrame:
    """Both batches inserted once each; the raw rows the rollups must equal."""
    for cut, rows in batches:
        _insert(client, cut, rows)
    return pd.concat([rows for _, rows in batches], ignore_index=True)


def test_the_workload_exercises_every_counter(loaded: pd.DataFrame) -> None:
    flags = _buckets(loaded)
    assert (flags[COUNTS].sum() > 0).all(), flags[COUNTS].sum()[lambda s: s == 0]
    assert flags["hour"].nunique() >= 2 and flags["day"].nunique() == 2


def test_every_rollup_level_equals_the_raw_rows(client: Client, loaded: pd.DataFrame) -> None:
    assert client.command(f"SELECT count() FROM {DB}.spans") == len(loaded)
    _assert_rollups_match(client, loaded)


def test_a_redelivered_batch_changes_no_level_and_a_new_token_adds_exactly_its_rows(
    client: Client, batches: list[tuple[Batch, pd.DataFrame]]
) -> None:
    database = f"{DB}_replay"  # its own database: this test's extra inserts stay out of the others' data
    apply_migrations(client, database, ttl_days=30)
    (first, first_rows), (second, second_rows) = batches
    _insert(client, first, first_rows, database)
    _assert_rollups_match(client, first_rows, database)
    before = _snapshot(client, database)
    _insert(client, first, first_rows, database)  # redelivered: same offsets, same token
    after = _snapshot(client, database)
    for level in LEVELS:
        pd.testing.assert_frame_equal(after[level], before[level], obj=level)

    _insert(client, second, second_rows, database)
    # Identical rows under a new token (a recreated topic re-sending them) are new data, not a replay.
    _insert(client, first, first_rows, database, topic_id="recreated-topic")
    expected = pd.concat([first_rows, second_rows, first_rows], ignore_index=True)
    _assert_rollups_match(client, expected, database)
    for cut, rows in batches:
        _insert(client, cut, rows, database)
    _assert_rollups_match(client, expected, database)
    assert client.command(f"SELECT count() FROM {database}.spans") == len(expected)


def _assert_within_sketch_error(estimates: np.ndarray, values: np.ndarray) -> None:
    """DDSketch: each estimate is within ALPHA (relative) of a value at the quantile's rank."""
    low = np.quantile(values, LEVELS_Q, method="lower")
    high = np.quantile(values, LEVELS_Q, method="higher")
    assert np.all(estimates >= low * (1 - ALPHA) - 1e-9) and np.all(estimates <= high * (1 + ALPHA) + 1e-9), (
        estimates,
        low,
        high,
    )


@pytest.mark.parametrize("level", ["minute", "hour", "day"])
def test_merged_sketches_are_within_one_percent_of_numpy(client: Client, loaded: pd.DataFrame, level: str) -> None:
    flags = _buckets(loaded)
    groups = ["tenant_id", "kind", level]
    frame = client.query_df(
        f"SELECT tenant_id, kind, {level}, "
        "arrayMap(q -> q / 1000, quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(duration_us_sketch)) AS duration, "
        "arrayMap(q -> q / 1000, quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(ttft_us_sketch)) AS ttft, "
        "quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(input_tokens_sketch) AS prompt_tokens, "
        "count() AS series "
        f"FROM {DB}.{LEVELS[level]} GROUP BY tenant_id, kind, {level}"
    )
    actual = _keyed(frame, groups)
    checked = 0
    for key, group in flags.groupby(groups):
        _assert_within_sketch_error(np.asarray(actual.loc[key, "duration"]), group["duration_ms"].to_numpy())
        ttft = group["ttft_ms"].dropna().to_numpy(dtype=float)
        if len(ttft):
            _assert_within_sketch_error(np.asarray(actual.loc[key, "ttft"]), ttft)
            checked += 1
        if key[1] == "llm":  # input-token sketches hold LLM calls only
            prompt = loaded.loc[group.index, "input_tokens"].to_numpy(dtype=float)
            _assert_within_sketch_error(np.asarray(actual.loc[key, "prompt_tokens"]), prompt)
    assert checked > 0 and (actual["series"] > 1).any()  # sketches of several series were merged


def test_spend_by_day_view_matches_the_raw_rows(client: Client, loaded: pd.DataFrame) -> None:
    flags = _buckets(loaded).assign(llm_calls=lambda f: f["kind"].eq("llm"))
    expected = (
        flags.rename(columns={"model_requested": "model"})
        .groupby(["tenant_id", "feature", "model", "day"])[
            ["cost_usd", "input_tokens", "output_tokens", "requests", "llm_calls"]
        ]
        .sum()
    )
    expected = _keyed(expected, ["tenant_id", "feature", "model", "day"])
    actual = client.query_df(
        f"SELECT tenant_id, feature, model, day, cost_usd, input_tokens, output_tokens, requests, llm_calls "
        f"FROM {DB}.spend_by_day"
    )
    actual = _keyed(actual, ["tenant_id", "feature", "model", "day"])
    assert actual.index.equals(expected.index)
    pd.testing.assert_series_equal(actual["cost_usd"], expected["cost_usd"], rtol=1e-9, atol=0.0)
    for name in ("input_tokens", "output_tokens", "requests", "llm_calls"):
        assert actual[name].astype("int64").tolist() == expected[name].astype("int64").tolist(), name


@pytest.mark.parametrize("level", ["minute", "hour"])
def test_latency_percentiles_view_is_within_one_percent_per_series(
    client: Client, loaded: pd.DataFrame, level: str
) -> None:
    keys = [*DIMENSIONS, level]
    view = client.query_df(
        f"SELECT {', '.join(keys)}, spans, duration_p50_ms, duration_p95_ms, duration_p99_ms "
        f"FROM {DB}.latency_percentiles_{level}"
    )
    view = _keyed(view, keys)
    grouped = _buckets(loaded).groupby(keys)
    assert len(view) == grouped.ngroups and int(view["spans"].sum()) == len(loaded)
    busiest = grouped.size().nlargest(20).index
    for key in busiest:
        estimates = view.loc[key, ["duration_p50_ms", "duration_p95_ms", "duration_p99_ms"]].to_numpy(dtype=float)
        _assert_within_sketch_error(estimates, grouped.get_group(key)["duration_ms"].to_numpy())


def test_rollup_tables_deduplicate_and_expire(client: Client) -> None:
    tables = client.query(
        "SELECT name, engine, partition_key, create_table_query FROM system.tables "
        "WHERE database = {db:String} AND name IN ('spans_minute', 'spans_hour', 'spans_day')",
        parameters={"db": DB},
    ).result_rows
    found = {name: (engine, partition, query) for name, engine, partition, query in tables}
    assert set(found) == set(LEVELS.values())
    for name, ttl in (
        ("spans_minute", "toIntervalDay(30)"),
        ("spans_hour", "toIntervalDay(365)"),
        ("spans_day", "toIntervalYear(3)"),
    ):
        engine, partition, query = found[name]
        assert engine == "AggregatingMergeTree" and partition
        assert ttl in query and "non_replicated_deduplication_window = 1000" in query, query
