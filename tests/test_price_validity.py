"""The as-of search of price periods (streams/pricing/validity.py) picks, for every (series,
instant), the row ``pandas.merge_asof(by="series", direction="backward")`` picks over the same
periods: the latest period of the series started at or before the instant, the last one in table
order when several start together, none when it had ended. Generated tables have few distinct
starts, so ties, instants equal to a start or an end, and series without periods are common."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from spanline.streams.pricing.validity import NO_ROW, Validity

PERIOD = st.tuples(st.integers(0, 3), st.integers(0, 6), st.one_of(st.none(), st.integers(1, 8)))


def reference(periods: list[tuple[int, int, int | None]], series: np.ndarray, at: np.ndarray) -> np.ndarray:
    right = pd.DataFrame(
        {
            "start": np.array([start for _, start, _ in periods], dtype=np.int64),
            "series": np.array([one for one, _, _ in periods], dtype=np.int64),
            "row": np.arange(len(periods)),
        }
    ).sort_values("start", kind="stable", ignore_index=True)
    until = np.array([np.iinfo(np.int64).max if end is None else end for _, _, end in periods], dtype=np.int64)
    out = np.full(len(series), NO_ROW, dtype=np.int64)
    wanted = np.flatnonzero(series >= 0)
    order = wanted[np.argsort(at[wanted], kind="stable")]
    left = pd.DataFrame({"t": at[order], "series": series[order]})
    merged = pd.merge_asof(left, right, left_on="t", right_on="start", by="series", direction="backward")
    rows = merged["row"].fillna(NO_ROW).to_numpy(np.int64)
    ended = (rows >= 0) & (at[order] >= until[np.maximum(rows, 0)])
    out[order] = np.where(ended, NO_ROW, rows)
    return out


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(
    st.lists(PERIOD, min_size=1, max_size=12),
    st.lists(st.tuples(st.integers(-1, 4), st.integers(-1, 9)), min_size=1, max_size=30),
)
def test_the_row_in_force_is_the_one_merge_asof_picks(
    periods: list[tuple[int, int, int | None]], queries: list[tuple[int, int]]
) -> None:
    ns = 10**9
    table = pd.DataFrame(
        {
            "series": [one for one, _, _ in periods],
            "valid_from": pd.to_datetime([start * ns for _, start, _ in periods], utc=True),
            "valid_until": pd.to_datetime([None if end is None else end * ns for _, _, end in periods], utc=True),
            "daily_from": pd.Series([pd.NaT] * len(periods), dtype="timedelta64[ns]"),
            "daily_until": pd.Series([pd.NaT] * len(periods), dtype="timedelta64[ns]"),
        }
    )
    series = np.array([one for one, _ in queries], dtype=np.int64)
    at = np.array([instant * ns for _, instant in queries], dtype=np.int64)
    scaled = [(one, start * ns, None if end is None else end * ns) for one, start, end in periods]
    assert np.array_equal(Validity(table).asof(series, at), reference(scaled, series, at))
