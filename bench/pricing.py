"""What the price corrections layer costs: ``PriceCatalog.price`` rows/s with and without it.

Prices the same batch of spans (models the corrections cover and ones they do not, start times
from 2024-06 to 2026-11, both sides of the 200K tier) with the bundled catalog alone and with the
corrections loaded, best of three runs each. Prints a table and writes bench/results/pricing.json.

    python bench/pricing.py --spans 200000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from spanline.contract.schema import TOKEN_FIELDS
from spanline.streams.pricing import PriceCatalog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import publish

MODELS = [
    ("deepseek", "deepseek-chat"),
    ("deepseek", "deepseek-reasoner"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-0"),
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("google", "gemini-2.5-flash-preview-04-17"),
    ("google", "gemini-1.5-flash"),
    ("", "openai/gpt-4o-2024-08-06"),
    ("mistral", "mistral-large-latest"),
]


def spans(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(MODELS), n)
    low, high = pd.Timestamp("2024-06-01", tz="UTC").value, pd.Timestamp("2026-11-30", tz="UTC").value
    frame = pd.DataFrame({name: np.zeros(n, dtype=np.int64) for name in TOKEN_FIELDS})
    frame["input_tokens"] = rng.integers(1_000, 400_000, n)
    frame["cache_read_tokens"] = (frame["input_tokens"] * rng.random(n) * 0.5).astype(np.int64)
    frame["output_tokens"] = rng.integers(10, 20_000, n)
    frame["reasoning_tokens"] = (frame["output_tokens"] * rng.random(n) * 0.5).astype(np.int64)
    frame["tenant_id"] = "acme"
    frame["provider"] = [MODELS[i][0] for i in which]
    frame["model_requested"] = [MODELS[i][1] for i in which]
    frame["model_response"] = ""
    frame["start_time"] = pd.to_datetime(rng.integers(low, high, n), utc=True).astype("datetime64[ms, UTC]")
    return frame


def best_rate(catalog: PriceCatalog, batch: pd.DataFrame) -> float:
    catalog.price(batch.iloc[:1_000])
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        catalog.price(batch)
        best = min(best, time.perf_counter() - started)
    return len(batch) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    args = parser.parse_args()
    batch = spans(args.spans)
    without = best_rate(PriceCatalog.load(corrections_file=None), batch)
    corrected = PriceCatalog.load()
    with_corrections = best_rate(corrected, batch)
    share = corrected.price(batch)["price_entry"].str.startswith("correction:").mean()
    publish(
        "pricing",
        {
            "spans": args.spans,
            "models": len(MODELS),
            "priced by a correction": f"{share:.0%}",
            "catalog only, rows/s": round(without),
            "with corrections, rows/s": round(with_corrections),
            "change": f"{with_corrections / without - 1:+.0%}",
        },
    )


if __name__ == "__main__":
    main()
