"""The evaluation harness hands the evaluator every minute whole and once.

A trace begun in a 10-minute block's last minute has spans starting after the block. Handed over
with its block, the next block's first minute would be evaluated from those few spans and the rest
of it ignored as already evaluated (the evaluator evaluates a minute once): one minute in ten
read near-empty, which both hid incidents and widened the spend noise reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spanline.alert_evaluation import WEEK_START
from spanline.alert_replay import complete_blocks, replay, stored_rows
from spanline.simulator.traffic_model import BLOCK_MINUTES, TrafficModel
from spanline.streams.pricing import PriceCatalog

MINUTES = 45


def _minute(rows: pd.DataFrame, model: TrafficModel) -> pd.Series:
    return (rows["start_time"] - pd.Timestamp(model.start)) // pd.Timedelta(minutes=1)


def test_every_block_holds_its_own_minutes_and_the_spans_that_spilled_into_them() -> None:
    model = TrafficModel(start=WEEK_START, requests_per_s=5.0)
    catalog = PriceCatalog.load()
    generated = [stored_rows(chunk, catalog) for chunk in model.minutes(0, MINUTES)]
    spilled = sum(int((_minute(rows, model) >= (i + 1) * BLOCK_MINUTES).sum()) for i, rows in enumerate(generated))
    assert spilled > 0  # the model does start traces in a block's last minute that outlive it

    blocks = list(complete_blocks(model, MINUTES, catalog))

    assert [end for end, _ in blocks] == [10, 20, 30, 40, 45]
    begin = 0
    for end, rows in blocks:
        assert _minute(rows, model).between(begin, end - 1).all(), (begin, end)
        begin = end
    handed = pd.concat([rows for _, rows in blocks], ignore_index=True)
    everything = pd.concat(generated, ignore_index=True)
    expected = everything[_minute(everything, model) < MINUTES]
    assert len(handed) == len(expected)
    for column in ("start_time", "cost_usd", "output_tokens"):
        assert np.array_equal(np.sort(handed[column].to_numpy()), np.sort(expected[column].to_numpy())), column
    assert replay(model, MINUTES / 1440, catalog, warmup_hours=1).spans == len(expected)
