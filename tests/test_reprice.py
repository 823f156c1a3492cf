"""Re-pricing stored spans (streams/reprice.py) on chDB: spans, span_cost_deltas and the three
rollup levels end equal to a fresh aggregation of the repriced spans, once, whatever the reruns
and crashes.

Spans come from the workload generator through the worker's own processing with the bundled
catalog, plus spans of a model the catalog does not know (stored unpriced). The correction is an
overrides file: a new price for gpt-4o-mini for every tenant and a price for the unknown model.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client

from spanline.simulator.workload import WorkloadConfig, generate_traces
from spanline.sql.client import connect
from spanline.sql.migrate import apply_migrations
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PRICE_COLUMNS, PriceCatalog
from spanline.streams.process import process_batch
from spanline.streams.reprice import STEP_ROLLED_UP, Chunk, RepriceResult, reprice
from tests.test_rollups import _assert_rollups_match, _insert, _snapshot

TOPIC = "spans"
CORRECTION = """
- provider: openai
  model: gpt-4o-mini
  input_mtok: 0.5
  output_mtok: 2.0
- provider: acme-labs
  model: acme-llm-1
  input_mtok: 1.0
  output_mtok: 3.0
"""
#: The stored window: 30 simulated minutes ending an hour ago, so it straddles an hour boundary.
END = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
START = END - timedelta(minutes=30)
#: The re-priced window: every stored span (a trace's last spans start after END).
UNTIL = END + timedelta(minutes=30)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    chdb = connect(f"chdb://{tmp_path_factory.mktemp('reprice') / 'chdb'}")
    yield chdb
    chdb.close()  # chDB admits one open data path per process


@pytest.fixture(scope="module")
def corrected(tmp_path_factory: pytest.TempPathFactory) -> PriceCatalog:
    path = tmp_path_factory.mktemp("prices") / "overrides.yaml"
    path.write_text(CORRECTION, encoding="utf-8")
    return PriceCatalog.load(path)


@pytest.fixture(scope="module")
def batches() -> list[tuple[Batch, pd.DataFrame]]:
    """Three Kafka batches priced with the bundled catalog, the last one of unknown-model spans."""
    config = WorkloadConfig(start=START, duration_s=1800, requests_per_s=0.5)
    chunks = [chunk for chunk in generate_traces(config) if chunk]
    unknown = [
        {
            "span_id": f"u{i}",
            "trace_id": f"unknown-{i}",
            "service": "labs",
            "kind": "llm",
            "provider": "acme-labs",
            "model_requested": "acme-llm-1",
            "start_time": (START + timedelta(seconds=37 * i)).isoformat(),
            "duration_ms": 900.0,
            "input_tokens": 1_000 + i,
            "output_tokens": 200,
            "attempt": i % 2,
            "prompt_id": "triage",
            "prompt_version": "3",
            "model_tier": "small",
        }
        for i in range(40)
    ]
    messages = [Message(0, offset, orjson.dumps(chunk), "test") for offset, chunk in enumerate([*chunks, unknown])]
    half = len(messages) // 2
    cuts = [
        Batch(0, 0, half - 1, messages[:half], False),
        Batch(0, half, len(messages) - 2, messages[half:-1], False),
        Batch(0, len(messages) - 1, len(messages) - 1, messages[-1:], False),
    ]
    catalog = PriceCatalog.load()
    processed = [(cut, process_batch(cut, TOPIC, catalog)) for cut in cuts]
    assert all(result.rows is not None and not result.dead_letters for _, result in processed)
    return [(cut, result.rows) for cut, result in processed if result.rows is not None]


def stored_database(client: Client, name: str, batches: list[tuple[Batch, pd.DataFrame]]) -> str:
    """A fresh database holding the batches, inserted as the worker inserts them."""
    apply_migrations(client, name, ttl_days=30)
    for cut, rows in batches:
        _insert(client, cut, rows, database=name)
    return name


def stored_spans(client: Client, database: str) -> pd.DataFrame:
    spans = client.query_df(f"SELECT * FROM {database}.spans ORDER BY tenant_id, trace_id, span_id")
    spans["start_time"] = pd.to_datetime(spans["start_time"], utc=True)  # the client reads it tz-naive
    return spans


def assert_repriced(client: Client, database: str, catalog: PriceCatalog) -> pd.DataFrame:
    """Every stored span has the catalog's cost, and every rollup level equals their aggregation.
    Labels are compared where there is a cost: a span that costs 0 either way keeps its label."""
    spans = stored_spans(client, database)
    expected = catalog.price(spans)
    costs = spans["cost_usd"].gt(0)
    for name in PRICE_COLUMNS:
        if name in ("price_source", "price_version", "price_entry"):
            assert (spans.loc[costs, name].astype(str) == expected.loc[costs, name].astype(str)).all(), name
        else:
            np.testing.assert_allclose(
                spans[name].astype(float), expected[name].astype(float), rtol=1e-12, err_msg=name
            )
    _assert_rollups_match(client, spans, database)
    return spans


def deltas(client: Client, database: str) -> int:
    return int(client.query(f"SELECT count() FROM {database}.span_cost_deltas").result_rows[0][0])


def test_reprice_end_to_end_then_a_rerun_changes_nothing(
    client: Client, batches: list[tuple[Batch, pd.DataFrame]], corrected: PriceCatalog
) -> None:
    database = stored_database(client, "reprice_e2e", batches)
    before = stored_spans(client, database)
    labs = before["model_requested"].eq("acme-llm-1")
    assert (before.loc[labs, "cost_known"] == 0).all()  # the unknown model's spans are stored unpriced
    unpriced = _snapshot(client, database)["day"]["unpriced"].sum()
    assert unpriced == (before["cost_known"] == 0).sum() >= 40  # also the simulator's self-hosted Llama

    result = reprice(client, database, corrected, START, UNTIL, chunk=timedelta(minutes=20))

    assert result.chunks == 3 and result.spans_read == len(before)
    after = assert_repriced(client, database, corrected)
    assert _snapshot(client, database)["day"]["unpriced"].sum() == unpriced - 40
    mini = before["model_requested"].eq("gpt-4o-mini") | before["model_response"].str.startswith("gpt-4o-mini")
    changed = int((mini & before["cost_usd"].gt(0)).sum()) + 40
    assert deltas(client, database) == changed == result.rewritten
    others = ~mini & ~labs
    assert after.loc[others, "cost_usd"].equals(before.loc[others, "cost_usd"])  # other spans untouched

    summary = result.by_model_and_day()
    assert set(summary["model"]) == {"gpt-4o-mini", "acme-llm-1"}
    new = summary[summary["model"] == "acme-llm-1"]
    assert new["spans"].sum() == 40 and new["newly_priced"].sum() == 40 and new["cost_before"].sum() == 0
    assert summary["delta"].sum() == pytest.approx(after["cost_usd"].sum() - before["cost_usd"].sum(), rel=1e-9)

    rollups = _snapshot(client, database)
    again = reprice(client, database, corrected, START, UNTIL, chunk=timedelta(minutes=20))
    assert again.by_model_and_day().empty and again.rewritten == 0 and again.spans_read == len(before)
    assert deltas(client, database) == changed
    for level, frame in _snapshot(client, database).items():
        pd.testing.assert_frame_equal(frame, rollups[level], obj=level)
    # other chunk sizes read the same spans and find nothing either
    assert (
        reprice(client, database, corrected, START - timedelta(hours=1), UNTIL, chunk=timedelta(minutes=7)).changes
        == []
    )


def test_a_crash_between_rollups_and_spans_rewrite_then_a_rerun_applies_once(
    client: Client, batches: list[tuple[Batch, pd.DataFrame]], corrected: PriceCatalog
) -> None:
    database = stored_database(client, "reprice_crash", batches)

    class Crash(Exception):
        pass

    crashed: list[Chunk] = []

    def crash_after_second_rollup(chunk: Chunk, step: str) -> None:
        if step == STEP_ROLLED_UP and chunk.since > START:
            crashed.append(chunk)
            raise Crash

    with pytest.raises(Crash):
        reprice(
            client, database, corrected, START, UNTIL, chunk=timedelta(minutes=20), after_step=crash_after_second_rollup
        )
    # the second chunk's deltas are in the rollups, its spans still hold the old cost
    spans = stored_spans(client, database)
    late = pd.to_datetime(spans["start_time"], utc=True) >= pd.Timestamp(crashed[0].since)
    labs = spans["model_requested"].eq("acme-llm-1")
    assert (spans.loc[late & labs, "cost_known"] == 0).any() and (spans.loc[~late & labs, "cost_known"] == 1).all()
    still_unpriced = int((spans["cost_known"] == 0).sum() - (late & labs).sum())
    assert _snapshot(client, database)["day"]["unpriced"].sum() == still_unpriced  # the rollups count them priced

    rerun = reprice(client, database, corrected, START, UNTIL, chunk=timedelta(minutes=20))
    assert rerun.by_model_and_day().empty  # nothing new rolled up: the rollups had it
    assert rerun.resumed == rerun.rewritten > 0
    assert_repriced(client, database, corrected)
    third = reprice(client, database, corrected, START, UNTIL, chunk=timedelta(minutes=20))
    assert third.rewritten == 0 and third.changes == []


def test_a_correction_after_a_crash_is_measured_from_what_the_rollups_hold(
    client: Client, batches: list[tuple[Batch, pd.DataFrame]], corrected: PriceCatalog, tmp_path: Path
) -> None:
    """Crash after rolling up one correction, then reprice with another: the rollups move from the
    first correction's cost to the second's, never from the stale spans rows."""
    database = stored_database(client, "reprice_two", batches)

    def crash(_: Chunk, step: str) -> None:
        if step == STEP_ROLLED_UP:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        reprice(client, database, corrected, START, UNTIL, chunk=timedelta(hours=1), after_step=crash)
    second = tmp_path / "second.yaml"
    second.write_text(CORRECTION.replace("0.5", "0.8").replace("3.0", "4.0"), encoding="utf-8")
    catalog = PriceCatalog.load(second)
    result = reprice(client, database, catalog, START, UNTIL)
    labs = result.by_model_and_day().set_index("model").loc["acme-llm-1"]
    assert labs["newly_priced"] == 0 and labs["cost_before"] > 0  # measured from the first correction
    assert_repriced(client, database, catalog)


def test_dry_run_writes_nothing(
    client: Client, batches: list[tuple[Batch, pd.DataFrame]], corrected: PriceCatalog
) -> None:
    database = stored_database(client, "reprice_dry", batches)
    rollups = _snapshot(client, database)
    result = reprice(client, database, corrected, START, UNTIL, dry_run=True)
    assert isinstance(result, RepriceResult) and result.by_model_and_day()["spans"].sum() > 40
    assert deltas(client, database) == 0 and result.rewritten == 0
    spans = stored_spans(client, database)
    assert (spans.loc[spans["model_requested"].eq("acme-llm-1"), "cost_known"] == 0).all()
    for level, frame in _snapshot(client, database).items():
        pd.testing.assert_frame_equal(frame, rollups[level], obj=level)
