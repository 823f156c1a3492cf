"""Shared output of the benchmarks: an aligned figure table on stdout and bench/results/NAME.json."""

from __future__ import annotations

from pathlib import Path

import orjson

RESULTS = Path(__file__).with_name("results")


def publish(name: str, figures: dict[str, object]) -> None:
    """Print ``figures`` as a two-column table and write them to ``bench/results/<name>.json``.
    A list value (per-item rows, printed by the benchmark itself) is shown by its length only,
    None (a figure the run could not measure) as n/a."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    width = max(map(len, figures))
    for key, value in figures.items():
        if isinstance(value, list):
            value = f"{len(value)} rows (JSON)"
        if value is None:
            value = "n/a"
        shown = f"{value:>14,}" if isinstance(value, int) else f"{value:>14}"
        print(f"{key:<{width}}  {shown}")
