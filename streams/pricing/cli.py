"""`spanline prices show` and `spanline prices diff`: the price in force and where corrections differ.

Both read the same table the worker prices with (:class:`PriceCatalog`, loaded from the same
settings), so what they print is what a span with those names and that start time is stored with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from spanline.contract.schema import TOKEN_FIELDS
from spanline.errors import ConfigError
from spanline.streams.pricing.catalog import PriceCatalog
from spanline.streams.pricing.corrections import BUNDLED, Correction, read_corrections
from spanline.streams.pricing.layout import (
    RATE_KEYS,
    SOURCE_CATALOG,
    SOURCE_CORRECTION,
    rate_column,
    tier_columns,
    tier_slots,
)

#: Rate names as the tables print them.
_RATE_LABELS = {
    "input": "input",
    "cache_read": "cache read",
    "cache_write": "cache write",
    "output": "output",
    "output_reasoning": "reasoning output",
}


@dataclass(frozen=True)
class PriceFiles:
    """The files the worker prices with (settings), so the commands show what it stores."""

    overrides: Path | None = None
    deployments: Path | None = None
    corrections: Path = BUNDLED


def parse_instant(text: str) -> pd.Timestamp:
    """``--at``: an ISO date or date-time (naive means UTC), or ``now``."""
    if text.strip().lower() == "now":
        return pd.Timestamp.now(tz="UTC")
    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        raise ConfigError(f"--at {text!r}: expected an ISO date or time such as 2025-09-05T16:00:00Z") from exc
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def show(model: str, provider: str, at: pd.Timestamp, tenant: str, files: PriceFiles) -> Table:
    """The price a span of ``provider``/``model`` starting at ``at`` gets, its layer, entry and source."""
    _quiet()
    catalog = PriceCatalog.load(files.overrides, files.corrections, files.deployments)
    row = _row_at(catalog, provider, model, at, tenant)
    title = f"{provider + '/' if provider else ''}{model} at {at:%Y-%m-%d %H:%M:%S} UTC"
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    if row is None:
        table.add_row(
            "price", "[red]none[/red]: spans with tokens are stored with cost_known = 0 (flagged, never free)"
        )
        table.add_row("fix", "add a price override (SPANLINE_PRICE_OVERRIDES_FILE) or a model deployments mapping")
        return table
    table.add_row("entry", row["entry"])
    table.add_row("layer", row["source"])
    table.add_row("version", row["version"])
    table.add_row("model", f"{row['provider_id']}/{row['model_id']}")
    if row["source"] == SOURCE_CORRECTION:
        entry = _corrections(files.corrections)[row["entry"].removeprefix(f"{SOURCE_CORRECTION}:")]
        table.add_row("source", f"{entry.source} (checked {entry.checked.isoformat()})")
        table.add_row("why", entry.note)
    table.add_row("valid", _validity(row))
    table.add_row("USD / MTok", _rates_text(row))
    if row["source"] != SOURCE_CATALOG:
        underneath = _row_at(PriceCatalog.load(corrections_file=None), provider, model, at, tenant)
        table.add_row("catalog says", "no price" if underneath is None else _rates_text(underneath))
    return table


def diff(files: PriceFiles) -> Table:
    """Each correction next to what the bundled catalog says for the same names at the same instant.

    An entry whose rates equal the catalog's at that instant still bounds them in time (the catalog
    applies DeepSeek's off-peak discount before it existed; the entry's series does not).
    """
    _quiet()
    corrections, _ = read_corrections(files.corrections)
    catalog = PriceCatalog.load(corrections_file=None)
    table = Table(title=f"price corrections ({files.corrections.name}) against the bundled catalog")
    for column in ("correction", "model", "in force", "rate (USD / MTok)", "catalog", "correction ", "source"):
        table.add_column(column, overflow="fold")
    for entry in corrections:
        probe = _probe(entry)
        name = (entry.names or [entry.model])[0]
        underneath = _row_at(catalog, entry.provider, name, probe, "")
        differences = _differences(entry, underneath)
        same = [(f"(all rates, at {probe:%Y-%m-%d %H:%M})", "same", "same")]
        for index, (label, theirs, ours) in enumerate(differences or same):
            first = index == 0
            table.add_row(
                entry.id if first else "",
                f"{entry.provider}/{name}" if first else "",
                _period(entry) if first else "",
                label,
                theirs,
                ours,
                f"{entry.source}\nchecked {entry.checked.isoformat()}" if first else "",
            )
    return table


def _quiet() -> None:
    """The table says when a model has no price; the worker's warning for it would only repeat that."""
    logging.getLogger("spanline.streams.pricing").setLevel(logging.ERROR)


def _row_at(catalog: PriceCatalog, provider: str, model: str, at: pd.Timestamp, tenant: str) -> pd.Series | None:
    spans = pd.DataFrame(
        {
            "tenant_id": [tenant],
            "provider": [provider],
            "model_response": [""],
            "model_requested": [model],
            "start_time": pd.DatetimeIndex([at]),
            **{name: [0] for name in TOKEN_FIELDS},
        }
    )
    row = int(catalog.rows_in_force(spans)[0])
    return None if row < 0 else catalog.table.iloc[row]


def _corrections(path: Path) -> dict[str, Correction]:
    entries, _ = read_corrections(path)
    return {entry.id: entry for entry in entries}


def _rates_text(row: pd.Series) -> str:
    parts = []
    for key in RATE_KEYS:
        value = row[rate_column(key)]
        if not np.isnan(value):
            parts.append(f"{_RATE_LABELS[key]} {_usd(value)}")
    if not np.isnan(row["output_thinking_mtok"]):
        parts.append(f"output with thinking on {_usd(row['output_thinking_mtok'])}")
    for slot in range(1, tier_slots(list(row.index)) + 1):
        tier = [
            f"{_RATE_LABELS[key]} {_usd(row[tier_columns(key, slot)[1]])}"
            for key in RATE_KEYS
            if np.isfinite(row[tier_columns(key, slot)[0]]) and not np.isnan(row[tier_columns(key, slot)[1]])
        ]
        if tier:
            above = min(row[tier_columns(key, slot)[0]] for key in RATE_KEYS)
            parts.append(f"above {above:,.0f} input tokens: " + ", ".join(tier))
    if row["request_usd"] > 0:
        parts.append(f"per request {_usd(row['request_usd'])}")
    return "; ".join(parts) or "no rates"


def _validity(row: pd.Series) -> str:
    start = "the beginning" if pd.isna(row["valid_from"]) else f"{row['valid_from']:%Y-%m-%d %H:%M} UTC"
    end = "no end" if pd.isna(row["valid_until"]) else f"{row['valid_until']:%Y-%m-%d %H:%M} UTC"
    text = f"{start} – {end}"
    if not pd.isna(row["daily_from"]):
        text += f", daily {_clock(row['daily_from'])}–{_clock(row['daily_until'])} UTC"
    return text


def _clock(value: pd.Timedelta) -> str:
    minutes = int(value.total_seconds()) // 60
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _usd(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _probe(entry: Correction) -> pd.Timestamp:
    """An instant the entry is in force: its start (inside its daily window), else just before its end, else now."""
    starts, ends = entry.starts(), entry.ends()
    if starts is None:
        starts = ends - pd.Timedelta(days=1) if ends is not None else pd.Timestamp.now(tz="UTC").floor("D")
    if entry.daily is None:
        return starts
    opening = starts.floor("D") + pd.Timedelta(hours=entry.daily.begins.hour, minutes=entry.daily.begins.minute)
    return opening if opening >= starts else opening + pd.Timedelta(days=1)


def _period(entry: Correction) -> str:
    starts, ends = entry.starts(), entry.ends()
    text = (
        f"{'…' if starts is None else f'{starts:%Y-%m-%d %H:%M}'} – {'…' if ends is None else f'{ends:%Y-%m-%d %H:%M}'}"
    )
    if entry.daily is not None:
        text += f"\ndaily {entry.daily.begins:%H:%M}–{entry.daily.ends:%H:%M} UTC"
    return text


def _differences(entry: Correction, catalog_row: pd.Series | None) -> list[tuple[str, str, str]]:
    """(rate, catalog, correction) for every rate the two disagree on; unset cache rates read as input's."""

    def catalog_rate(column: str) -> float:
        if catalog_row is None:
            return float("nan")
        value = float(catalog_row[column])
        if np.isnan(value) and column in (rate_column("cache_read"), rate_column("cache_write")):
            return float(catalog_row[rate_column("input")])
        return value

    ours = {
        rate_column("input"): entry.input_mtok,
        rate_column("cache_read"): entry.cache_read_mtok if entry.cache_read_mtok is not None else entry.input_mtok,
        rate_column("cache_write"): entry.cache_write_mtok if entry.cache_write_mtok is not None else entry.input_mtok,
        rate_column("output"): entry.output_mtok,
        "output_thinking_mtok": entry.output_thinking_mtok,
    }
    for tier in entry.tiers:
        ours[f"above {tier.above:,} input"] = tier.input_mtok
        ours[f"above {tier.above:,} output"] = tier.output_mtok
    out = []
    for column, value in ours.items():
        theirs = _catalog_tier(catalog_row, column) if column.startswith("above") else catalog_rate(column)
        ours_value = float("nan") if value is None else float(value)
        if not (np.isnan(theirs) and np.isnan(ours_value)) and theirs != ours_value:
            label = column.removesuffix("_mtok").replace("_", " ")
            out.append(
                (label, "—" if np.isnan(theirs) else _usd(theirs), "—" if np.isnan(ours_value) else _usd(ours_value))
            )
    if catalog_row is None:
        out.insert(0, ("(model)", "no price", "priced"))
    return out


def _catalog_tier(row: pd.Series | None, label: str) -> float:
    """The catalog's rate above a threshold (its base rate when it has no tier there)."""
    if row is None:
        return float("nan")
    threshold = float(label.split()[1].replace(",", ""))
    key = label.split()[-1]
    rate = float(row[rate_column(key)])
    for slot in range(1, tier_slots(list(row.index)) + 1):
        above, tier_rate = tier_columns(key, slot)
        if row[above] < threshold + 1:
            rate = float(row[tier_rate])
    return rate
