"""The noise references' per-minute parts (alerts/minute_parts.py): each frame is grouped once and
remembered while it lives; what a reference reads must not depend on which frames were seen
before, and a freed frame must not leave its groupings behind (the live worker runs for weeks)."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from spanline.alerts import minute_parts as module
from spanline.alerts.metrics import METRICS
from spanline.alerts.minute_parts import minute_parts

START = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
DIMS = ("tenant_id", "feature")


def _frames(count: int, seed: int = 3) -> list[tuple[datetime, pd.DataFrame]]:
    """Minute frames of grain rows: cache and llm rows of three scopes (one without a feature),
    a scope missing from some minutes, and one minute handed over in two frames."""
    rng = np.random.default_rng(seed)
    frames = []
    for n in range(count):
        scopes = [("acme", "chat"), ("acme", None), ("globex", "search")][: 2 + n % 2]
        rows = [
            {
                "tenant_id": tenant,
                "feature": feature,
                "kind": kind,
                "cost_usd": float(rng.gamma(2.0, 0.01)),
                "spans": 1.0,
                "cache_hits": float(rng.integers(0, 4)),
                "cache_lookups": 4.0,
            }
            for tenant, feature in scopes
            for kind in ("llm", "cache")
        ]
        frames.append((START + timedelta(minutes=n), pd.DataFrame(rows)))
    frames.insert(7, (frames[6][0], frames[6][1].assign(cost_usd=1.0, cache_hits=4.0)))
    return frames


def _expected(chosen: list[tuple[datetime, pd.DataFrame]], metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same figures by a plain pivot of every row (no memory)."""
    rows = pd.concat([frame.assign(minute=minute) for minute, frame in chosen])
    spec = METRICS[metric]
    if spec.kinds is not None:
        rows = rows[rows["kind"].isin(spec.kinds)]
    parts = spec.parts(rows).assign(tenant_id=rows["tenant_id"], feature=rows["feature"], minute=rows["minute"])
    minutes = sorted({minute for minute, _ in chosen})
    sums = parts.groupby([*DIMS, "minute"], dropna=False)[["num", "den"]].sum()
    num, den = (sums[part].unstack(fill_value=0.0).reindex(columns=minutes, fill_value=0.0) for part in ("num", "den"))
    return num, den


@pytest.mark.parametrize("metric", ["cost_usd", "cache_hit_rate"])
def test_a_reference_reads_the_same_whether_its_frames_were_seen_or_not(metric: str) -> None:
    """Minutes 0–99 read fresh, then 1–100 (99 remembered, one new) and 0–99 again from a second
    copy of the frames (none remembered): each equals a plain pivot of the rows, the scope without
    a feature and the minute handed over in two frames included."""
    frames = _frames(101)
    spec = METRICS[metric]
    for chosen in (frames[:100], frames[1:101], _frames(101)[:100]):
        num, den = minute_parts(chosen, spec, DIMS)
        expected_num, expected_den = _expected(chosen, metric)
        for got, expected in ((num, expected_num), (den, expected_den)):
            got = got.sort_index()
            expected = expected.sort_index()
            assert got.shape == expected.shape == (3, len({minute for minute, _ in chosen}))
            np.testing.assert_allclose(got.to_numpy(dtype="float64"), expected.to_numpy(dtype="float64"))


def test_a_freed_frame_is_forgotten() -> None:
    frames = _frames(40, seed=9)
    minute_parts(frames, METRICS["cost_usd"], DIMS)
    ids = {id(frame) for _, frame in frames}
    assert ids <= module._REMEMBERED.keys()
    del frames
    gc.collect()
    assert not ids & module._REMEMBERED.keys()
