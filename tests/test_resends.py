"""Re-send detection (streams/resends.py): a span whose (tenant, trace, span) key was stored within
the window of Kafka message time before it is dropped; the same partition log always yields the
same decision, so a replayed batch is filtered as it was the first time."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from spanline.streams.resends import CLOCK_SLACK_MS, RecentSpans, span_keys

HOUR_MS = 3_600_000


def keys(*names: str) -> np.ndarray:
    return span_keys(["acme"] * len(names), ["t"] * len(names), list(names))


def test_keys_are_stable_and_tell_tenants_traces_and_spans_apart() -> None:
    first = span_keys(["acme", "globex", "acme", "acme"], ["t1", "t1", "t2", "t1"], ["s1", "s1", "s1", "s2"])
    assert len(set(first.tolist())) == 4
    assert span_keys(["acme"], ["t1"], ["s1"])[0] == first[0]  # same key in another call (and process)


def test_a_key_stored_within_the_window_is_a_resend_and_one_older_is_not() -> None:
    recent = RecentSpans(HOUR_MS)
    recent.add(keys("a", "b"), np.array([1_000, 2_000]))
    stamps = np.array([1_000 + HOUR_MS, 2_000 + HOUR_MS + 1, 5_000])
    assert recent.resends(keys("a", "b", "c"), stamps).tolist() == [True, False, False]


def test_repeats_inside_one_batch_count_from_the_second() -> None:
    recent = RecentSpans(HOUR_MS)
    assert recent.resends(keys("a", "b", "a", "a"), np.array([1, 2, 3, 4])).tolist() == [False, False, True, True]


def test_a_window_of_zero_turns_detection_off() -> None:
    recent = RecentSpans(0)
    recent.add(keys("a"), np.array([1]))
    assert recent.resends(keys("a", "a"), np.array([2, 3])).tolist() == [False, False] and len(recent) == 0


def test_old_keys_are_evicted_as_message_time_moves_on() -> None:
    recent = RecentSpans(HOUR_MS)
    for batch in range(64):
        stamp = batch * 60_000
        recent.add(span_keys(["acme"] * 100, ["t"] * 100, [f"{batch}-{i}" for i in range(100)]), np.full(100, stamp))
    held_minutes = (HOUR_MS + CLOCK_SLACK_MS) // 60_000 + 1
    assert len(recent) <= 100 * (held_minutes + 16)  # runs are evicted when merged: a bounded excess
    assert recent.nbytes == 16 * len(recent)
    newest = 63 * 60_000
    assert recent.resends(keys_of(63), np.full(100, newest)).all()


def keys_of(batch: int) -> np.ndarray:
    return span_keys(["acme"] * 100, ["t"] * 100, [f"{batch}-{i}" for i in range(100)])


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3 * HOUR_MS)), min_size=1, max_size=80), st.integers(1, 10)
)
def test_batched_detection_equals_the_definition_on_any_log(log: list[tuple[int, int]], batch_size: int) -> None:
    """Whatever the batching, a span is a re-send iff an earlier stored span of the log has its key
    and a message time at most one window before its own (message times in increasing order)."""
    log = sorted(log, key=lambda entry: entry[1])
    names = [str(name) for name, _ in log]
    stamps = np.array([stamp for _, stamp in log], dtype=np.int64)
    expected, stored = [], []
    for name, stamp in zip(names, stamps, strict=True):
        repeated = any(n == name and s >= stamp - HOUR_MS for n, s in stored)
        expected.append(repeated)
        if not repeated:
            stored.append((name, stamp))
    recent = RecentSpans(HOUR_MS)
    actual: list[bool] = []
    for start in range(0, len(log), batch_size):
        batch_keys, batch_stamps = keys(*names[start : start + batch_size]), stamps[start : start + batch_size]
        repeated = recent.resends(batch_keys, batch_stamps)
        actual += repeated.tolist()
        recent.add(batch_keys[~repeated], batch_stamps[~repeated])
    assert actual == expected


def test_process_batch_drops_resent_spans_and_counts_them() -> None:
    span = {
        "span_id": "s1",
        "trace_id": "t1",
        "tenant_id": "acme",
        "service": "svc",
        "kind": "llm",
        "start_time": "2026-11-22T10:00:00Z",
        "duration_ms": 5.0,
    }
    other = {**span, "span_id": "s2"}
    messages = [
        Message(0, 10, orjson.dumps([span, other]), "test", 1_000),
        Message(0, 11, orjson.dumps([span]), "test", 2_000),
    ]  # the same span POSTed again
    recent = RecentSpans(HOUR_MS)
    processed = process_batch(Batch(0, 10, 11, messages, replayed=False), "spans", PriceCatalog.load(None), recent)
    assert processed.resends == 1 and processed.rows is not None
    assert processed.rows["span_id"].tolist() == ["s1", "s2"] and processed.rows["kafka_offset"].tolist() == [10, 10]
    assert processed.rows["kafka_timestamp"].tolist() == [pd.Timestamp(1_000, unit="ms", tz="UTC")] * 2
    part = processed.parts[0]
    recent.add(part.keys, part.stamps)
    again = process_batch(
        Batch(0, 12, 12, [Message(0, 12, orjson.dumps([other]), "test", 3_000)], replayed=False),
        "spans",
        PriceCatalog.load(None),
        recent,
    )
    assert again.resends == 1 and again.rows is None and not again.dead_letters
