"""The evaluator's state file: a restored evaluator behaves exactly as the saved one,
and a file that cannot be used is set aside with one error log while the worker rebuilds its
baselines from ClickHouse (chDB here) instead of failing on every minute."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import pickle
import stat
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client
from ddsketch import DDSketch

from spanline.alerts.baselines import SKETCH_ACCURACY, BaselineStore, merged
from spanline.alerts.conditions import family_of
from spanline.alerts.evaluator import Evaluator
from spanline.alerts.events import AlertEvent
from spanline.alerts.metrics import METRICS
from spanline.alerts.rules import load_rules
from spanline.alerts.state import FORMAT, VERSION, SavedState, encode
from spanline.alerts.worker import AlertingService, Publish
from spanline.contracts import load_contracts
from spanline.metrics import (
    ALERT_EVALUATION_FAILURES,
    ALERT_EVALUATOR_HEALTHY,
    ALERT_LAST_MINUTE,
    ALERT_MINUTES_EVALUATED,
)
from spanline.settings import Settings
from spanline.windows.aggregate import empty
from spanline.windows.records import WindowRecord
from spanline.windows.records import encode as encode_window
from tests.support.alert_frames import Knobs, diurnal, minute_frame
from tests.support.chdb import migrated_chdb
from tests.support.metrics import sample
from tests.test_alert_evaluator import START, Minute, learned

DB = "alert_state"
OUTAGE = (replace(Knobs(), error_rate=0.8), {"provider": "anthropic"})
NEW_VERSION = (replace(Knobs(), model_response="gpt-4o-mini-2025-02-01"), {"provider": "openai"})
OUTPUT_SPIKE = (replace(Knobs(), output_tokens=4500.0), {"tenant_id": "acme"})


def minutes(
    rng: np.random.Generator, start: datetime, count: int, incident: tuple[Knobs, dict[str, str]] | None = None
) -> list[Minute]:
    """Synthetic minutes, built once so two evaluators can be fed the very same frames."""
    built = []
    for n in range(count):
        minute = start + timedelta(minutes=n)
        knobs, where = incident if incident else (None, None)
        built.append(
            Minute(
                minute,
                minute_frame(
                    minute,
                    rng,
                    diurnal(Knobs(), minute, rng),
                    where=where,
                    incident=None if knobs is None else diurnal(knobs, minute, rng),
                ),
            )
        )
    return built


def feed(evaluator: Evaluator, figures: list[Minute]) -> list[AlertEvent]:
    return [event for minute in figures for event in evaluator.evaluate(minute)]


def document(evaluator: Evaluator) -> dict[str, Any]:
    saved = orjson.loads(encode(SavedState(evaluator.store, evaluator.keys, evaluator.active, evaluator.last_minute)))
    del saved["saved_at"]
    return saved


def sketch_figures(sketch: DDSketch | None) -> tuple | None:
    if sketch is None:
        return None
    return (sketch.count, sketch.sum, *(sketch.get_quantile_value(q) for q in (0.0, 0.01, 0.5, 0.95, 0.99, 1.0)))


def assert_same_store(saved: BaselineStore, restored: BaselineStore) -> None:
    assert restored.series.keys() == saved.series.keys()
    assert (restored.minute_retention, restored.hour_retention) == (saved.minute_retention, saved.hour_retention)
    for family, series in saved.series.items():
        twin = restored.series[family]
        assert twin.folded_until == series.folded_until
        assert twin.observed_from == series.observed_from
        pd.testing.assert_frame_equal(twin.hours, series.hours, check_exact=True)
        plain = [c for c in series.minutes.columns if c != "sketch"]
        pd.testing.assert_frame_equal(twin.minutes[plain], series.minutes[plain], check_exact=True)
        if "sketch" in series.minutes:
            assert [sketch_figures(s) for s in twin.minutes["sketch"]] == [
                sketch_figures(s) for s in series.minutes["sketch"]
            ]


def baselines(evaluator: Evaluator, now: datetime) -> dict[tuple, pd.DataFrame]:
    """Every baseline a rule reads at ``now`` (computed through the store's cache)."""
    found = {}
    for rule in evaluator.rules:
        for clause in rule.clauses:
            spec = getattr(clause.condition, "baseline", None)
            if spec is not None:
                family = family_of(clause, tuple(rule.scope))
                found[family, spec] = evaluator.store.baseline(family, spec, now)
    assert found
    return found


@pytest.fixture(scope="module")
def before_the_hour() -> tuple[Evaluator, list[Minute]]:
    """An evaluator after 10:40-10:59 with an outage firing and a new model version seen, and the
    minutes that follow (the outage clears, then an output spike): the save point crosses an hour
    that is folded only on the next minute, with percentile sketches and key history in the state."""
    rng = np.random.default_rng(21)
    evaluator = learned(rng)
    feed(evaluator, minutes(rng, START + timedelta(minutes=40), 5))
    feed(evaluator, minutes(rng, START + timedelta(minutes=45), 5, NEW_VERSION))
    fired = feed(evaluator, minutes(rng, START + timedelta(minutes=50), 10, OUTAGE))
    assert {e.rule for e in fired if e.state == "firing"} >= {"error_rate"}
    after = START + timedelta(hours=1)
    following = (
        minutes(rng, after, 2, OUTAGE)
        + minutes(rng, after + timedelta(minutes=2), 8)
        + minutes(rng, after + timedelta(minutes=10), 12, OUTPUT_SPIKE)
    )
    return evaluator, following


def test_a_restored_evaluator_behaves_exactly_as_the_saved_one(
    before_the_hour: tuple[Evaluator, list[Minute]], tmp_path: Path
) -> None:
    saved, following = copy.deepcopy(before_the_hour)
    path = tmp_path / "alerts" / "worker.state"
    saved.save(path)
    restored = Evaluator(load_rules(), load_contracts())
    assert restored.restore(path)

    assert restored.last_minute == saved.last_minute == START + timedelta(minutes=59)
    assert_same_store(saved.store, restored.store)
    assert restored.keys.keys() == saved.keys.keys()
    for family, history in saved.keys.items():
        assert restored.keys[family].settle == history.settle and restored.keys[family].scopes == history.scopes
        pd.testing.assert_frame_equal(restored.keys[family].keys, history.keys, check_exact=True)
    assert restored.active == saved.active and any(a.state == "firing" for a in saved.active.values())
    assert restored.firing() == saved.firing()
    assert document(restored) == document(saved)

    restored.frames.extend(saved.frames)  # as the worker reloads them from spans_minute
    before = feed(saved, following)
    after = feed(restored, following)
    assert after == before
    assert {(e.rule, e.state) for e in before} >= {("error_rate", "resolved"), ("cost_spike_hourly", "firing")}
    end = following[-1].minute + timedelta(minutes=1)
    for key, baseline in baselines(saved, end).items():
        pd.testing.assert_frame_equal(baselines(restored, end)[key], baseline, check_exact=True)
    assert document(restored) == document(saved)


def test_restored_sketches_keep_their_figures_and_merge_with_fresh_ones(tmp_path: Path) -> None:
    sketch = DDSketch(SKETCH_ACCURACY)
    for value in (-40.0, -2.5, 0.0, 0.0, 3.0, 250.0, 1e6):
        sketch.add(value, 1.5)
    evaluator = Evaluator(load_rules(), load_contracts())
    family = next(
        family_of(c, tuple(r.scope))
        for r in evaluator.rules
        for c in r.clauses
        if METRICS[c.metric].kind == "percentile"
    )
    parts = pd.DataFrame({d: ["x"] for d in family.dims} | {"num": [1.0], "den": [2.0], "sketch": [sketch]})
    evaluator.store.record(family, START, parts)
    evaluator.save(tmp_path / "s.state")
    restored = Evaluator(load_rules(), load_contracts())
    assert restored.restore(tmp_path / "s.state")
    twin = restored.store.series[family].minutes["sketch"].iloc[0]
    assert type(twin) is DDSketch and twin is not sketch
    assert sketch_figures(twin) == sketch_figures(sketch) and (twin._min, twin._max) == (-40.0, 1e6)
    fresh = DDSketch(SKETCH_ACCURACY)
    fresh.add(7.0)
    assert sketch_figures(merged([twin, fresh])) == sketch_figures(merged([sketch, fresh]))


def test_the_state_file_is_private_from_creation_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "alerts" / "worker.state"
    path.parent.mkdir()
    path.write_bytes(b"previous")
    path.chmod(0o644)
    stale = path.with_name(f"{path.name}.tmp")
    stale.write_bytes(b"left by a crash")
    stale.chmod(0o666)
    evaluator = Evaluator(load_rules(), load_contracts(), last_minute=START)
    previous_umask = os.umask(0)
    try:
        evaluator.save(path)
    finally:
        os.umask(previous_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["worker.state"]
    saved = orjson.loads(path.read_bytes())
    assert (saved["format"], saved["version"], saved["last_minute"]) == (FORMAT, VERSION, "2026-11-20T10:00:00+00:00")


def test_a_file_saved_before_unrecorded_events_were_kept_restores_with_none(tmp_path: Path) -> None:
    path = tmp_path / "worker.state"
    Evaluator(load_rules(), load_contracts(), last_minute=START).save(path)
    saved = orjson.loads(path.read_bytes())
    assert saved.pop("unrecorded") == []
    path.write_bytes(orjson.dumps(saved))
    restored = Evaluator(load_rules(), load_contracts())
    assert restored.restore(path)
    assert (restored.last_minute, restored.unrecorded) == (START, [])


# --- files that cannot be used
def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def edited(valid: bytes) -> bytes:
        saved = orjson.loads(valid)
        change(saved)
        return orjson.dumps(saved)

    return edited


def _firing(saved: dict[str, Any]) -> dict[str, Any]:
    return next(entry for entry in saved["active"] if entry["event"] is not None)


def _drop_column(saved: dict[str, Any]) -> None:
    columns = saved["store"]["families"][0]["minutes"]["columns"]
    columns[:] = [c for c in columns if c["name"] != "num"]


def _minutes_as_numbers(saved: dict[str, Any]) -> None:
    minutes = next(e["minutes"] for e in saved["store"]["families"] if e["minutes"]["columns"][0]["values"])
    column = next(c for c in minutes["columns"] if c["name"] == "minute")
    column.update(dtype="int64", values=list(range(len(column["values"]))))


def _first_sketch(saved: dict[str, Any]) -> dict[str, Any]:
    return next(
        column["values"][0]["ddsketch"]
        for entry in saved["store"]["families"]
        for column in entry["minutes"]["columns"]
        if column["name"] == "sketch"
    )


CORRUPT: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "random_bytes": (lambda valid: bytes(np.random.default_rng(7).integers(1, 128, 4096, dtype=np.uint8)), "not JSON"),
    "empty": (lambda valid: b"", "not JSON"),
    "truncated_json": (lambda valid: valid[: len(valid) // 2], "not JSON"),
    "pickle_of_the_previous_release": (
        lambda valid: pickle.dumps((2, (BaselineStore(), {}, {}, None)), protocol=pickle.HIGHEST_PROTOCOL),
        "pickle",
    ),
    "other_json": (lambda valid: b'{"hello": "world"}', f"not a {FORMAT} document"),
    "wrong_version": (_edit(lambda s: s.update(version=VERSION + 1)), f"format version {VERSION + 1}"),
    "missing_store": (_edit(lambda s: s.pop("store")), "missing field 'store'"),
    "missing_event_field": (_edit(lambda s: _firing(s)["event"].pop("dedup_key")), "missing field 'dedup_key'"),
    "odd_alert_state": (_edit(lambda s: _firing(s).update(state="exploded")), "'exploded'"),
    "naive_last_minute": (_edit(lambda s: s.update(last_minute="2026-11-20T10:59:00")), "no UTC offset"),
    "missing_column": (_edit(_drop_column), "lack the columns ['num']"),
    "odd_sketch_bin": (
        _edit(lambda s: _first_sketch(s)["positive"]["counts"].__setitem__(0, "many")),
        "sketch bin count is 'many'",
    ),
    "sketch_of_another_accuracy": (
        _edit(lambda s: _first_sketch(s).update(relative_accuracy=0.02)),
        "relative accuracy 0.02",
    ),
    "minutes_that_are_not_times": (_edit(_minutes_as_numbers), "column 'minute' holds values that are not UTC times"),
    "odd_event_value": (_edit(lambda s: _firing(s)["event"].update(value="high")), "'value' is a str"),
}


@pytest.fixture(scope="module")
def valid_state(before_the_hour: tuple[Evaluator, list[Minute]], tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("valid") / "worker.state"
    before_the_hour[0].save(path)
    return path.read_bytes()


def _problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("variant", list(CORRUPT))
def test_an_unusable_state_file_is_set_aside_with_one_error_and_nothing_restored(
    variant: str, valid_state: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make, reason = CORRUPT[variant]
    path = tmp_path / "worker.state"
    content = make(valid_state)
    path.write_bytes(content)
    evaluator = Evaluator(load_rules(), load_contracts())
    with caplog.at_level(logging.INFO):
        assert evaluator.restore(path) is False
        assert evaluator.restore(path) is False  # nothing left to retry: the bad file is gone
    [record] = _problems(caplog)
    message = record.getMessage()
    assert record.levelno == logging.ERROR and str(path) in message and reason in message, message
    assert "rebuilt from ClickHouse" in message
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith("worker.state.corrupt-")]
    assert not path.exists() and kept.read_bytes() == content and str(kept) in message
    assert (evaluator.store.series, evaluator.keys, evaluator.active, evaluator.last_minute) == ({}, {}, {}, None)


def test_an_unreadable_state_path_is_set_aside_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "worker.state"
    path.mkdir()  # read_bytes fails with IsADirectoryError
    with caplog.at_level(logging.INFO):
        assert Evaluator(load_rules(), load_contracts()).restore(path) is False
    [record] = _problems(caplog)
    assert "unreadable" in record.getMessage() and not path.exists()
    assert [p.name.startswith("worker.state.corrupt-") for p in tmp_path.iterdir()] == [True]


# --- the worker's start-up
@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with migrated_chdb(tmp_path_factory.mktemp("alert_state") / "chdb", DB) as chdb:
        yield chdb


async def publish_nowhere(key: bytes, value: bytes) -> None:
    return None


def service_for(home: Path, database: str, client: Client, publish: Publish = publish_nowhere) -> AlertingService:
    async def storage(function: Callable[..., Any], *args: Any) -> Any:
        return function(client, *args)

    return AlertingService(
        Settings(home=home, clickhouse_database=database),
        storage,
        publish,
        lambda: SimpleNamespace(spans_in=0, dead_letters=0),
    )


def start_and_evaluate(service: AlertingService, minute: Minute) -> None:
    """What ``handle`` does with a first complete minute: prepare, then evaluate it."""

    async def run() -> None:
        await service._prepare(minute.minute)
        await service._evaluate(minute)

    asyncio.run(run())


def test_a_worker_with_a_corrupt_state_file_bootstraps_from_clickhouse_and_evaluates_at_once(
    client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = service_for(tmp_path, DB, client)
    service.state_path.parent.mkdir(parents=True)
    service.state_path.write_bytes(b"\x80\x05 not what it used to be")
    first = minutes(np.random.default_rng(3), START, 1)[0]
    evaluated_before = sample(ALERT_MINUTES_EVALUATED, "spanline_alert_minutes_evaluated_total")
    with caplog.at_level(logging.INFO):
        start_and_evaluate(service, first)
    assert sample(ALERT_MINUTES_EVALUATED, "spanline_alert_minutes_evaluated_total") == evaluated_before + 1
    assert sample(ALERT_LAST_MINUTE, "spanline_alert_last_evaluated_minute_seconds") == first.minute.timestamp()
    [record] = _problems(caplog)
    assert "pickle" in record.getMessage() and "rebuilt from ClickHouse" in record.getMessage()
    assert any("bootstrapped from alert_state" in r.getMessage() for r in caplog.records)
    assert service._ready and service.evaluator.last_minute == first.minute
    service.save()
    assert stat.S_IMODE(service.state_path.stat().st_mode) == 0o600
    assert Evaluator(load_rules(), load_contracts()).restore(service.state_path)


def test_a_bootstrap_that_cannot_succeed_ends_in_empty_baselines_not_a_retry_loop(
    client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = service_for(tmp_path, "no_such_database", client)
    first = minutes(np.random.default_rng(3), START, 1)[0]
    with caplog.at_level(logging.INFO):
        start_and_evaluate(service, first)
    messages = [r.getMessage() for r in _problems(caplog)]
    assert messages[0].startswith(
        "bootstrapping the alert baselines from ClickHouse failed; alerting starts from empty baselines"
    ), messages
    assert service._ready and service.evaluator.last_minute == first.minute
    assert all(len(s.hours) == 0 for s in service.evaluator.store.series.values())


def test_a_failed_evaluation_is_counted_and_marks_the_evaluator_unhealthy_until_a_record_succeeds(
    client: Client, tmp_path: Path
) -> None:
    service = service_for(tmp_path, DB, client)
    failures_before = sample(ALERT_EVALUATION_FAILURES, "spanline_alert_evaluation_failures_total")
    with pytest.raises(ValueError):
        asyncio.run(service.handle(b"not a window record"))
    assert sample(ALERT_EVALUATION_FAILURES, "spanline_alert_evaluation_failures_total") == failures_before + 1
    assert sample(ALERT_EVALUATOR_HEALTHY, "spanline_alert_evaluator_healthy") == 0
    quiet = WindowRecord(0, int(START.timestamp()), 0, 0, 0, 0, empty())  # completes no minute yet
    assert asyncio.run(service.handle(encode_window(quiet))) == []
    assert sample(ALERT_EVALUATOR_HEALTHY, "spanline_alert_evaluator_healthy") == 1


def test_a_page_sent_before_a_stop_gets_its_history_row_after_the_restart(client: Client, tmp_path: Path) -> None:
    """The worker pages first and writes the ``alerts`` row after (a ClickHouse that is down must
    not hold a page); stopped in between — here while the event is published — the saved state
    keeps the event, and the restarted worker writes its row, once."""
    rng = np.random.default_rng(8)

    async def stopped_while_publishing(key: bytes, value: bytes) -> None:
        raise asyncio.CancelledError

    stopping = service_for(tmp_path, DB, client, stopped_while_publishing)
    stopping.evaluator, stopping._ready = learned(rng), True
    outage = minutes(rng, START, 10, OUTAGE)
    paged: list[AlertEvent] = []
    for minute in outage:
        try:
            assert asyncio.run(stopping._evaluate(minute)) == []
        except asyncio.CancelledError:
            paged = list(stopping.evaluator.unrecorded)
            break
    assert [e.rule for e in paged if e.state == "firing"] == ["error_rate"]
    stopping.save()  # what stop() does

    def rows() -> list[tuple[object, ...]]:
        query = f"SELECT state, count() FROM {DB}.alerts WHERE dedup_key = %(key)s GROUP BY state"
        return [tuple(r) for r in client.query(query, parameters={"key": paged[0].dedup_key}).result_rows]

    assert rows() == []
    restarted = service_for(tmp_path, DB, client)
    asyncio.run(restarted._prepare(minute.minute + timedelta(minutes=1)))
    assert rows() == [("firing", 1)]
    assert restarted.evaluator.unrecorded == []
    asyncio.run(restarted._record_history())  # nothing left to write
    restarted.evaluator.unrecorded.extend(paged)
    asyncio.run(restarted._record_history())  # written again (a retry): deduplicated
    assert rows() == [("firing", 1)]
