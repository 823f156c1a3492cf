"""genai-prices' bundled price snapshot, flattened once into the price table.

**Offline only.** genai-prices fetches prices from GitHub only inside ``UpdatePrices``: its
``start()`` (or ``with UpdatePrices():``) launches a background thread that downloads a new
snapshot and installs it with ``data_snapshot.set_custom_snapshot``; ``calc_price`` then reads it
through ``data_snapshot.get_snapshot()``. Spanline never creates an ``UpdatePrices`` and never goes
through ``get_snapshot()``: :func:`bundled_snapshot` builds its own ``DataSnapshot`` from the module
``genai_prices.data`` (the data shipped in the wheel). So no network request can happen, prices
cannot change under a running worker even if another library in the process starts the updater,
and a stored cost is reproducible from the installed genai-prices version (``price_version``).

**Conditional prices.** A model's price list is either one price or a list of conditional prices
that genai-prices tries last to first, taking the first whose constraint holds (a start date, or a
daily UTC time window such as DeepSeek's peak hours), else the first. :func:`flatten` turns that
rule into rows: one per date period (``valid_from``, for ``merge_asof``) and one per daily window
(``daily_from``/``daily_until``, applied over the date price until ``valid_until``, the first later
start date that outranks it). **Price variants** (batch processing, service tiers, …) are selected by
request context that spans do not carry; like ``calc_price`` without ``price_context``, the default
(standard) price is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Final

import genai_prices
import pandas as pd
from genai_prices.data import providers as bundled_providers
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import (
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)

from spanline.streams.pricing.layout import RATE_KEYS, SOURCE_CATALOG, normalise_table, rate_column, tier_columns

GENAI_PRICES_VERSION: Final[str] = genai_prices.__version__
CATALOG_LABEL: Final[str] = f"genai-prices {GENAI_PRICES_VERSION}"
#: ``price_entry`` of every span the bundled catalog priced.
CATALOG_ENTRY: Final[str] = f"catalog:{GENAI_PRICES_VERSION}"

Constraint = StartDateConstraint | TimeOfDateConstraint | None


def bundled_snapshot() -> DataSnapshot:
    """A private snapshot of the wheel's data: never the one ``UpdatePrices`` may install."""
    return DataSnapshot(providers=bundled_providers, from_auto_update=False)


@dataclass(frozen=True)
class FlatCatalog:
    """The flattened snapshot and the series number of each of its models."""

    table: pd.DataFrame
    #: ``id(ModelInfo)`` -> price series. Keyed by identity because ``ModelInfo`` is an unhashable
    #: dataclass and the lookup returns the very objects of ``providers``, which live as long as we do.
    series_of_model: dict[int, int]


def flatten(providers: list[Provider]) -> FlatCatalog:
    """One table row per (model, date period) and per (model, daily window), every provider."""
    rows: list[dict[str, Any]] = []
    series_of_model: dict[int, int] = {}
    for provider in providers:
        for model in provider.models:
            series = len(series_of_model)
            series_of_model[id(model)] = series
            rows += _model_rows(series, provider, model)
    table = pd.DataFrame(rows)
    return FlatCatalog(normalise_table(table), series_of_model)


def _model_rows(series: int, provider: Provider, model: ModelInfo) -> list[dict[str, Any]]:
    entries = _entries(model.prices)
    label = f"{CATALOG_LABEL} {provider.id}/{model.id}"
    base = {
        "series": series,
        "provider_id": provider.id,
        "model_id": model.id,
        "match": str(model.match),
        "tenant": "",
        "source": SOURCE_CATALOG,
        "entry": CATALOG_ENTRY,
    }
    rows = [
        {
            **base,
            "valid_from": start,
            "version": label if start is None else f"{label} since {start.isoformat()}",
            **_rates(entries[index][1]),
        }
        for start, index in _date_periods(entries)
    ]
    for index, window, until in _daily_windows(entries):
        begin, end = _utc_time(window.start_time), _utc_time(window.end_time)
        version = f"{label} daily {begin:%H:%M}-{end:%H:%M} UTC"
        rows.append(
            {
                **base,
                "valid_until": until,
                "daily_from": _since_midnight(begin),
                "daily_until": _since_midnight(end),
                "version": version,
                **_rates(entries[index][1]),
            }
        )
    return rows


def _entries(prices: ModelPrice | list[ConditionalPrice]) -> list[tuple[Constraint, ModelPrice]]:
    if isinstance(prices, ModelPrice):
        return [(None, prices)]
    return [(conditional.constraint, conditional.prices) for conditional in prices]


def _date_periods(entries: list[tuple[Constraint, ModelPrice]]) -> list[tuple[date | None, int]]:
    """(first day, index of the winning entry) per period, time windows left aside.

    Evaluates genai-prices' rule (last active entry wins, else the first) at every start date, so
    the result is exact whatever order the entries come in.
    """
    starts = sorted({c.start_date for c, _ in entries if isinstance(c, StartDateConstraint)})
    periods: list[tuple[date | None, int]] = []
    for day in [None, *starts]:
        active = [
            i
            for i, (c, _) in enumerate(entries)
            if c is None or (isinstance(c, StartDateConstraint) and day is not None and c.start_date <= day)
        ]
        winner = active[-1] if active else 0
        if not periods or periods[-1][1] != winner:
            periods.append((day, winner))
    return periods


def _daily_windows(entries: list[tuple[Constraint, ModelPrice]]) -> list[tuple[int, TimeOfDateConstraint, date | None]]:
    """(index, window, first day it no longer wins or None) of each window that can win, in list order.

    A window outranks every entry before it; a later start-date entry outranks it from its start
    date on, and a later unconditional entry always does (then the window can never win).
    """
    windows: list[tuple[int, TimeOfDateConstraint, date | None]] = []
    for index, (constraint, _) in enumerate(entries):
        if not isinstance(constraint, TimeOfDateConstraint):
            continue
        later = [c for c, _ in entries[index + 1 :]]
        if any(c is None for c in later):
            continue
        until = min((c.start_date for c in later if isinstance(c, StartDateConstraint)), default=None)
        windows.append((index, constraint, until))
    return windows


def _rates(price: ModelPrice) -> dict[str, Any]:
    """Rate columns of one price: base per MTok, tiers, and the flat per-request fee."""
    out: dict[str, Any] = {}
    for key in RATE_KEYS:
        value: Decimal | TieredPrices | None = getattr(price, rate_column(key))
        if isinstance(value, TieredPrices):
            out[rate_column(key)] = float(value.base)
            for slot, tier in enumerate(value.tiers, start=1):
                above, rate = tier_columns(key, slot)
                out[above], out[rate] = float(tier.start), float(tier.price)
        elif value is not None:
            out[rate_column(key)] = float(value)
    fee = price.requests_kcount
    if isinstance(fee, TieredPrices):
        raise ValueError("this genai-prices snapshot has a tiered per-request fee, which the price table cannot hold")
    out["request_usd"] = 0.0 if fee is None else float(fee) / 1000.0
    return out


def _utc_time(value: time) -> time:
    """A constraint's time of day in UTC (naive = UTC), as genai-prices compares it."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.combine(date(1970, 1, 1), aware).astimezone(UTC).time()


def _since_midnight(value: time) -> pd.Timedelta:
    return pd.Timedelta(hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond)
