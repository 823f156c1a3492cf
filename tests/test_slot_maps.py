"""The 10-second slot maps of the alert windows and the burn-rate ``sustained`` option they feed.

Rows are the independent traffic model's spans through the worker's own ``process_batch``, with a
20-second wall of 429s laid over one minute; the slot figures are checked against a count made
here from the rows' start times, across partitions, through the metrics record and in the rules.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from spanline.alert_evaluation import WEEK_START
from spanline.alert_replay import stored_rows
from spanline.alerts.baselines import SLOT_DEN, SLOT_NUM, BaselineStore, Family
from spanline.alerts.conditions import sustained_seconds
from spanline.alerts.metrics import METRICS
from spanline.alerts.rules import load_rules
from spanline.errors import ConfigError
from spanline.simulator.traffic_model import TrafficModel
from spanline.simulator.traffic_overlays import Overlay
from spanline.streams.pricing import PriceCatalog
from spanline.windows.aggregate import MAPS, SLOTS, Partials, aggregate, combine
from spanline.windows.merger import figures_frame
from spanline.windows.records import WindowRecord, decode, encode

SLOT_MAPS = ("first_attempts_by_slot", "first_attempt_errors_by_slot", "first_attempt_rate_limited_by_slot")
WALL_AT = WEEK_START + timedelta(minutes=2, seconds=20)  # 20 s of 429s on OpenAI: slots 2 and 3 of minute 2


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    wall = Overlay(
        name="wall", start=WALL_AT, duration=timedelta(seconds=20), provider="openai", knobs={"rate_limited": 1.0}
    )
    model = TrafficModel(start=WEEK_START, requests_per_s=5.0, overlays=(wall,))
    spans = [span for chunk in model.minutes(0, 4) for span in chunk]
    return stored_rows(spans, PriceCatalog.load()).reset_index(drop=True)


def _slot_table(partials: Partials) -> pd.Series:
    """(grain group keys, map, slot) -> count, comparable across differently numbered partials."""
    names = np.array(list(MAPS))
    maps = partials.maps[np.isin(names[partials.maps["map"].to_numpy()], SLOT_MAPS)]
    keys = partials.groups.iloc[maps["group"].to_numpy()].reset_index(drop=True).astype(str)
    table = keys.assign(map=names[maps["map"].to_numpy()], slot=maps["key"].to_numpy(), value=maps["value"].to_numpy())
    return table.set_index([*partials.groups.columns, "map", "slot"])["value"].sort_index()


def test_slot_maps_count_first_attempts_by_the_slot_of_their_start(rows: pd.DataFrame) -> None:
    start = pd.to_datetime(rows["start_time"], utc=True)
    first = (rows["attempt"].astype(int) == 0) & rows["kind"].isin(["llm", "tool"])
    limited = first & (rows["http_status"].astype(int).eq(429) | rows["error_type"].eq("rate_limited"))
    failed = first & rows["status"].eq("error")
    expected = pd.DataFrame(
        {
            "provider": rows["provider"].astype(str),
            "minute": start.dt.floor("min").astype("datetime64[ns, UTC]"),
            "slot": ((start - start.dt.floor("min")).dt.total_seconds() // 10).astype(int).astype(str),
            "first_attempts_by_slot": first,
            "first_attempt_errors_by_slot": failed,
            "first_attempt_rate_limited_by_slot": limited,
        }
    )
    frame = figures_frame(aggregate(rows))
    for name in SLOT_MAPS:
        got = (
            frame.assign(entries=frame[name].map(lambda entries: list(entries.items())))
            .explode("entries")
            .dropna(subset=["entries"])
        )
        got = pd.DataFrame(
            {
                "provider": got["provider"].astype(str).to_numpy(),
                "minute": pd.to_datetime(got["minute"], utc=True).astype("datetime64[ns, UTC]").to_numpy(),
                "slot": [entry[0] for entry in got["entries"]],
                "value": [entry[1] for entry in got["entries"]],
            }
        )
        counted = got.groupby(["provider", "minute", "slot"])["value"].sum()
        wanted = expected.groupby(["provider", "minute", "slot"])[name].sum()
        wanted = wanted[wanted > 0]
        pd.testing.assert_series_equal(counted.sort_index(), wanted.sort_index(), check_names=False, check_dtype=False)
    # the slots sum to the minute's counters (LLM and tool rows)
    llm_or_tool = frame[frame["kind"].isin(["llm", "tool"])]
    totals = llm_or_tool["first_attempts_by_slot"].map(lambda entries: sum(entries.values()))
    assert (totals == llm_or_tool["spans"] - llm_or_tool["retries"]).all()
    # the wall hits the calls that start in it (slots 2 and 3 of minute 2), every one of them, and
    # no call after it: an agent that arrived in the wall makes its later steps unharmed
    openai = expected[expected["provider"].eq("openai")]
    per_slot = openai.groupby(["minute", "slot"])[
        ["first_attempt_rate_limited_by_slot", "first_attempts_by_slot"]
    ].sum()
    rate = per_slot["first_attempt_rate_limited_by_slot"] / per_slot["first_attempts_by_slot"]
    wall_minute = pd.Timestamp(WALL_AT).floor("min")
    in_wall = (rate.index.get_level_values("minute") == wall_minute) & rate.index.get_level_values("slot").isin(
        ["2", "3"]
    )
    assert (rate[in_wall] == 1.0).all() and in_wall.sum() == 2
    assert rate[~in_wall].max() < 0.1, rate[~in_wall].sort_values().tail()


def test_two_partitions_merged_equal_the_aggregate_of_all_rows(rows: pd.DataFrame) -> None:
    odd = rows.index.to_numpy() % 2 == 1
    merged = combine([aggregate(rows[odd].reset_index(drop=True)), aggregate(rows[~odd].reset_index(drop=True))])
    whole = aggregate(rows)
    pd.testing.assert_series_equal(_slot_table(merged), _slot_table(whole))
    assert len(_slot_table(whole)) > 0


def test_a_record_written_before_the_slot_maps_still_loads(rows: pd.DataFrame) -> None:
    """A metrics payload (topic, metric_windows) from before the slot maps: no such map names or rows."""
    partials = aggregate(rows[rows["start_time"] < pd.Timestamp(WEEK_START + timedelta(minutes=1))])
    record = WindowRecord(0, int(WEEK_START.timestamp()), 10, 0, 0, 0, partials)
    body = orjson.loads(encode(record))
    slot_positions = [body["map_names"].index(name) for name in SLOT_MAPS]
    keep = [position not in slot_positions for position in body["maps"]["map"]]
    body["maps"] = {name: [v for v, k in zip(values, keep, strict=True) if k] for name, values in body["maps"].items()}
    body["map_names"] = [name for name in body["map_names"] if name not in SLOT_MAPS]  # older writers' list
    body["maps"]["map"] = [body["map_names"].index(list(MAPS)[p]) for p in (body["maps"]["map"])]
    old = decode(orjson.dumps(body))
    frame = figures_frame(old.partials)
    assert all(entries == {} for name in SLOT_MAPS for entries in frame[name])
    assert frame["errors_by_type"].map(len).sum() == figures_frame(partials)["errors_by_type"].map(len).sum()


def _slots(rate_limited: list[list[float]], calls: list[list[float]], scope: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(np.hstack([np.array(rate_limited), np.array(calls)]), columns=[*SLOT_NUM, *SLOT_DEN])
    return frame.assign(provider=scope)


def test_sustained_counts_slots_at_the_threshold_with_a_failing_call() -> None:
    wall = [[0, 0, 0, 0, 9, 10], [10, 0, 0, 0, 0, 0]]  # 30 s at 100 % across a minute boundary
    storm = [[2, 1, 2, 2, 1, 2], [2, 2, 1, 2, 2, 1]]  # 15 % of 10 calls per slot
    quiet = [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]  # 0 of 0: no calls at all counts nothing
    seconds = sustained_seconds(
        _slots(
            [*wall, *storm, *quiet],
            [[10] * SLOTS] * 4 + [[0] * SLOTS] * 2,
            ["wall", "wall", "storm", "storm", "quiet", "quiet"],
        ),
        ("provider",),
        0.03,
    )
    assert seconds.to_dict() == {"wall": 30.0, "storm": 120.0, "quiet": 0.0}
    # below one failing call a slot never counts, whatever its rate (fractions never occur in counts)
    assert sustained_seconds(_slots([[0.5] * SLOTS], [[1] * SLOTS], ["x"]), ("provider",), 0.03)["x"] == 0.0


def test_a_minute_without_slot_figures_counts_whole_at_its_own_rate() -> None:
    """Minutes bootstrapped from the rollups (no slot maps) are judged as before the slots."""
    store = BaselineStore()
    family = Family("rate_limited_rate", None, ("provider",))
    minute = WEEK_START
    store.record(
        family, minute, pd.DataFrame({"provider": ["openai", "anthropic"], "num": [6.0, 0.0], "den": [60.0, 60.0]})
    )
    window = store.slot_window(family, minute + timedelta(minutes=1), timedelta(minutes=1))
    assert sustained_seconds(window, ("provider",), 0.03).to_dict() == {"openai": 60.0, "anthropic": 0.0}


def test_sustained_is_validated(tmp_path: Path) -> None:
    rules = (Path(__file__).parents[1] / "alerts" / "rules.yaml").read_text()
    path = tmp_path / "rules.yaml"
    # the first tier with sustained is error_rate's critical one (long 2m)
    for bad, message in (("sustained: 45s}", "multiple of 10s"), ("sustained: 4m}", "at most long")):
        path.write_text(rules.replace("sustained: 60s}", bad, 1))
        with pytest.raises(ConfigError, match=message):
            load_rules(path)
    path.write_text(rules.replace("metric: tool_error_rate", "metric: cache_hit_rate", 1))
    with pytest.raises(ConfigError, match="sustained needs per-slot figures; 'cache_hit_rate' has none"):
        load_rules(path)
    assert {name for name, metric in METRICS.items() if metric.slot_numerator} == {
        "error_rate",
        "rate_limited_rate",
        "tool_error_rate",
    }
