"""CPU cost of the alert evaluator per evaluated minute, on the simulator's baseline workload.

Learns ``--history-hours`` of baseline traffic as closed hours (a fresh worker's bootstrap, its
minutes kept for diagnoses), then times ``Evaluator.evaluate`` on each of the next ``--minutes``
minutes in CPU time (other load on the machine inflates CPU time less than wall time). The spans
go through the worker's own ``process_batch`` and ``aggregate`` first, untimed. Prints a table and
writes bench/results/evaluator_minutes.json.

    python bench/evaluator_minutes.py --minutes 60 --rate 5

Before/after a change: run the same command on both checkouts, interleaved (the box is shared),
with the same ``--minutes``/``--rate``/``--seed``; the evaluated traffic is the same.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from spanline.alert_replay import stored_rows
from spanline.alerts.evaluator import Evaluator
from spanline.alerts.rules import load_rules
from spanline.contracts import load_contracts
from spanline.simulator.scenarios import get_scenario
from spanline.simulator.workload import generate_traces
from spanline.streams.pricing import PriceCatalog
from spanline.windows.aggregate import aggregate
from spanline.windows.merger import MinuteFigures, figures_frame

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import publish

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TENANTS = ("acme", "globex")


def baseline_rows(start: datetime, hours: float, rate: float, seed: int, catalog: PriceCatalog) -> pd.DataFrame:
    """The stored rows of the baseline scenario's traffic (as tests/test_alert_scenarios.py replays it)."""
    config = get_scenario("baseline").workload(
        start=start, hours=hours, requests_per_s=rate, seed=seed, tenants=TENANTS
    )
    spans = [span for chunk in generate_traces(config) for span in chunk]
    return stored_rows(spans, catalog).reset_index(drop=True)


def minutes_of(rows: pd.DataFrame) -> Iterator[MinuteFigures]:
    """The rows' minutes, oldest first, as the merger hands them to the evaluator."""
    frame = figures_frame(aggregate(rows))
    for minute, figures in frame.groupby("minute", sort=True):
        yield MinuteFigures(pd.Timestamp(minute).to_pydatetime(), figures.reset_index(drop=True), 0)


def hours_of(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows per closed hour, shaped like a ``spans_hour`` read (grain + ``hour``)."""
    hourly = rows.assign(start_time=rows["start_time"].dt.floor("h"))
    return figures_frame(aggregate(hourly)).rename(columns={"minute": "hour"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60, help="minutes evaluated (timed)")
    parser.add_argument("--rate", type=float, default=5.0, help="requests/s of the baseline workload")
    parser.add_argument("--history-hours", type=int, default=3, help="closed hours learnt before (untimed)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    catalog = PriceCatalog.load(None)
    history = baseline_rows(
        START - timedelta(hours=args.history_hours), args.history_hours, args.rate, args.seed + 6, catalog
    )
    evaluated = baseline_rows(START, args.minutes / 60.0, args.rate, args.seed, catalog)
    evaluator = Evaluator(load_rules(), load_contracts())
    evaluator.learn_hours(hours_of(history))
    for figures in minutes_of(history):
        evaluator.remember(figures.minute, figures.frame)
    figures_list = list(minutes_of(evaluated))
    costs: list[float] = []
    events = 0
    for figures in figures_list:
        started = time.process_time()
        events += len(evaluator.evaluate(figures))
        costs.append(time.process_time() - started)
    ms = sorted(cost * 1000 for cost in costs)
    publish(
        "evaluator_minutes",
        {
            "minutes evaluated": len(ms),
            "requests/s": args.rate,
            "spans per minute": round(len(evaluated) / max(len(ms), 1)),
            "rules": len(evaluator.rules),
            "alert events": events,
            "CPU ms per evaluated minute (mean)": round(statistics.fmean(ms), 1),
            "CPU ms per evaluated minute (median)": round(statistics.median(ms), 1),
            "CPU ms per evaluated minute (p95)": round(ms[int(0.95 * (len(ms) - 1))], 1),
            "CPU ms, first minute (hours folded)": round(costs[0] * 1000, 1),
        },
    )


if __name__ == "__main__":
    main()
