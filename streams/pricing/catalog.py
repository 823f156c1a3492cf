"""The price catalog: prices a batch of spans column-wise (docs/requirements.md §4).

Per batch: each distinct (provider, model_response, model_requested) is resolved once (cached
across batches); each span then gets the price-table row valid at its ``start_time`` with
``pandas.merge_asof``, in this order of precedence:

1. a tenant-specific override, 2. an every-tenant override, 3. a price correction (the project's
reviewed fixes, :mod:`.corrections`: one for the exact name sent before one for its whole catalog
model), 4. the genai-prices catalog (with its daily windows), else no price.

``model_response`` (what was served) is tried before ``model_requested`` (what was asked for), for
overrides, corrections and the catalog alike; any override beats a correction, any correction the
catalog. ``price_entry`` names the entry that priced each span (``catalog:<genai-prices version>``,
``correction:<id>``, ``override:<n>``; '' when none did).

A span without a price but with tokens is flagged, never silently free: ``cost_known = 0``, costs
0.0, ``price_source = 'unknown'`` (and ``price_version`` names the catalog consulted, so it can be
repriced after an upgrade). A span with no tokens and no price (tools, retrieval, failed calls of
unknown models) costs a known 0.0 with ``price_source = 'none'``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from pandas.api.extensions import ExtensionArray

from spanline.streams.pricing.corrections import BUNDLED, SeriesKey, correction_rows, read_corrections
from spanline.streams.pricing.costs import RateArrays, Tokens
from spanline.streams.pricing.layout import SOURCE_NONE, SOURCE_UNKNOWN, normalise_table
from spanline.streams.pricing.overrides import override_rows, read_overrides
from spanline.streams.pricing.resolve import Identity, ModelResolver, NameMatch, read_deployments
from spanline.streams.pricing.snapshot import CATALOG_LABEL, bundled_snapshot, flatten
from spanline.streams.pricing.validity import NO_ROW, Validity, epoch_ns

logger = logging.getLogger(__name__)

#: Columns :meth:`PriceCatalog.price` returns, in this order.
PRICE_COLUMNS: Final = (
    "input_cost_usd",
    "cache_read_cost_usd",
    "cache_write_cost_usd",
    "output_cost_usd",
    "cost_usd",
    "cost_known",
    "price_source",
    "price_version",
    "price_entry",
)
_STR = pd.StringDtype("pyarrow", na_value=np.nan)
#: Distinct (provider, response, requested) triples remembered before the cache is dropped.
MAX_CACHED_TRIPLES: Final = 16_384


@dataclass(frozen=True)
class _Resolved:
    catalog_series: int
    override: int  # index of the override identity, -1 when no override covers the names
    name_correction: int  # correction series for the exact name, -1 when none
    model_correction: int  # correction series for the whole catalog model, -1 when none


class PriceCatalog:
    """genai-prices' offline snapshot, the price corrections and per-tenant overrides, as one flat price table.

    ``table`` is that table (layout in :mod:`.layout`): one row per price period or daily window.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        resolver: ModelResolver,
        override_series: dict[tuple[Identity, str], int],
        correction_series: dict[SeriesKey, int] | None = None,
    ) -> None:
        self.table = table
        self._resolver = resolver
        self._corrections = correction_series or {}
        self._rates = RateArrays(table)
        self._sources = _Labels([*table["source"], SOURCE_UNKNOWN, SOURCE_NONE])
        self._versions = _Labels([*table["version"], CATALOG_LABEL, ""])
        self._entries = _Labels([*table["entry"], "", ""])
        self._validity = Validity(table)
        identities = sorted({identity for identity, _ in override_series})
        self._override_index = {identity: i for i, identity in enumerate(identities)}
        self._global_series = np.array(
            [override_series.get((identity, ""), NO_ROW) for identity in identities], dtype=np.int64
        )
        self._tenant_series = {(self._override_index[i], t): s for (i, t), s in override_series.items() if t}
        self._triples: dict[tuple[str, str, str], _Resolved] = {}

    @classmethod
    def load(
        cls,
        overrides_file: Path | None = None,
        corrections_file: Path | None = BUNDLED,
        deployments_file: Path | None = None,
    ) -> PriceCatalog:
        """Flatten the bundled snapshot (never fetched), add the corrections and the overrides file, if any.

        ``corrections_file=None`` leaves the catalog as genai-prices ships it (tests comparing with
        ``calc_price``; ``spanline prices diff``).
        """
        flat = flatten(bundled_snapshot().providers)
        deployments = read_deployments(deployments_file) if deployments_file is not None else None
        resolver = ModelResolver(bundled_snapshot, flat.series_of_model, deployments)
        table = flat.table
        correction_series: dict[SeriesKey, int] = {}
        if corrections_file is not None:
            corrections, digest = read_corrections(corrections_file)
            rows, correction_series = correction_rows(corrections, resolver, int(table["series"].max()) + 1)
            table = _append(table, rows)
            logger.info("price corrections: %d entries (sha256 %s)", len(corrections), digest[:12])
        override_series: dict[tuple[Identity, str], int] = {}
        if overrides_file is not None:
            entries, digest = read_overrides(overrides_file)
            rows, override_series = override_rows(entries, digest, resolver, int(table["series"].max()) + 1)
            table = _append(table, rows)
            logger.info("price overrides: %d entries from %s (sha256 %s)", len(entries), overrides_file, digest[:12])
        logger.info("price catalog: %s, %d models, %d price rows", CATALOG_LABEL, len(flat.series_of_model), len(table))
        return cls(table, resolver, override_series, correction_series)

    def price(self, spans: pd.DataFrame) -> pd.DataFrame:
        """Cost columns for ``spans``, aligned with its index (see :data:`PRICE_COLUMNS`)."""
        return self._frame(spans.index, self.rows_in_force(spans), Tokens.of(spans))

    def rows_in_force(self, spans: pd.DataFrame) -> npt.NDArray[np.int64]:
        """The price-table row that prices each span (-1: none), from its names, tenant and start time."""
        start_ns = epoch_ns(spans["start_time"])
        triple, resolved = self._resolve(spans)
        catalog_series = np.array([r.catalog_series for r in resolved], dtype=np.int64)[triple]
        chosen = self._validity.lookup(catalog_series, start_ns)
        if self._corrections:
            by_name = self._validity.lookup(np.array([r.name_correction for r in resolved], np.int64)[triple], start_ns)
            by_model = self._validity.lookup(
                np.array([r.model_correction for r in resolved], np.int64)[triple], start_ns
            )
            chosen = np.where(by_name >= 0, by_name, np.where(by_model >= 0, by_model, chosen))
        override = np.array([r.override for r in resolved], dtype=np.int64)[triple]
        if (override >= 0).any():
            tenant_row = self._validity.asof(self._tenant_override_series(override, spans["tenant_id"]), start_ns)
            global_row = self._validity.asof(np.where(override >= 0, self._global_series[override], NO_ROW), start_ns)
            chosen = np.where(tenant_row >= 0, tenant_row, np.where(global_row >= 0, global_row, chosen))
        rows: npt.NDArray[np.int64] = np.asarray(chosen, dtype=np.int64)
        return rows

    def catalog_series(self, provider: str, model_response: str, model_requested: str) -> int:
        """The catalog price series these names resolve to (-1: none), overrides not consulted;
        ``table`` rows with that ``series`` are its price history (bench/peer_kafka_engine.py)."""
        return self._resolve_triple(provider, model_response, model_requested).catalog_series

    def _resolve(self, spans: pd.DataFrame) -> tuple[np.ndarray, list[_Resolved]]:
        """Code of each span's (provider, response, requested) triple, and each triple's resolution."""
        provider, providers = _factorize_text(spans["provider"])
        response, responses = _factorize_text(spans["model_response"])
        requested, requesteds = _factorize_text(spans["model_requested"])
        combined = (provider * len(responses) + response) * len(requesteds) + requested
        triple, distinct = pd.factorize(combined)
        resolved = []
        for code in distinct:
            rest, q = divmod(int(code), len(requesteds))
            p, r = divmod(rest, len(responses))
            resolved.append(self._resolve_triple(providers[p], responses[r], requesteds[q]))
        return triple, resolved

    def _resolve_triple(self, provider: str, response: str, requested: str) -> _Resolved:
        key = (provider, response, requested)
        found = self._triples.get(key)
        if found is not None:
            return found
        if len(self._triples) >= MAX_CACHED_TRIPLES:
            self._triples.clear()
        names = [name for name in (response, requested) if name]
        matches = [self._resolver.match(provider, name) for name in names]
        override = next(
            (self._override_index[m.identity] for m in matches if m.identity in self._override_index), NO_ROW
        )
        series = next((m.series for m in matches if m.series >= 0), NO_ROW)
        name_correction, model_correction = self._correction_series(matches)
        if matches and override == NO_ROW and series == NO_ROW and model_correction == name_correction == NO_ROW:
            logger.warning(
                "no price for provider=%r model_response=%r model_requested=%r: spans with tokens "
                "are flagged cost_known=0 (add a price override?)",
                provider,
                response,
                requested,
            )
        found = self._triples[key] = _Resolved(series, override, name_correction, model_correction)
        return found

    def _correction_series(self, matches: list[NameMatch]) -> tuple[int, int]:
        """(exact-name, whole-model) correction series of the first name the catalog or a correction knows."""
        for match in matches:
            provider_id, model_id = match.identity
            by_name = self._corrections.get(("name", provider_id, match.name), NO_ROW)
            by_model = self._corrections.get(("model", provider_id, model_id), NO_ROW)
            if match.series >= 0 or by_name >= 0 or by_model >= 0:
                return by_name, by_model
        return NO_ROW, NO_ROW

    def _tenant_override_series(self, override: np.ndarray, tenant_id: pd.Series) -> npt.NDArray[np.int64]:
        tenant, tenants = _factorize_text(tenant_id)
        pair, distinct = pd.factorize(np.where(override >= 0, override * len(tenants) + tenant, NO_ROW))
        series_of_pair = np.full(len(distinct), NO_ROW, dtype=np.int64)
        for i, code in enumerate(distinct):
            if code >= 0:
                identity, tenant_code = divmod(int(code), len(tenants))
                series_of_pair[i] = self._tenant_series.get((identity, tenants[tenant_code]), NO_ROW)
        series: npt.NDArray[np.int64] = series_of_pair[pair]
        return series

    def _frame(self, index: pd.Index, chosen: np.ndarray, tokens: Tokens) -> pd.DataFrame:
        priced = chosen >= 0
        has_tokens = tokens.any()
        costs = self._rates.costs(np.where(priced, chosen, 0), tokens)

        def kept(values: np.ndarray) -> np.ndarray:
            return np.where(priced, values, 0.0)

        label = np.where(priced, chosen, np.where(has_tokens, len(self.table), len(self.table) + 1))
        columns = {
            "input_cost_usd": kept(costs.input),
            "cache_read_cost_usd": kept(costs.cache_read),
            "cache_write_cost_usd": kept(costs.cache_write),
            "output_cost_usd": kept(costs.output),
            "cost_usd": kept(costs.input + costs.cache_read + costs.cache_write + costs.output + costs.request),
            "cost_known": (priced | ~has_tokens).astype(np.uint8),
            "price_source": self._sources.take(label),
            "price_version": self._versions.take(label),
            "price_entry": self._entries.take(label),
        }
        return pd.DataFrame(columns, index=index)


class _Labels:
    """Text per table row (plus the unknown and none rows), gathered for a batch by Arrow's take:
    no Python string per span."""

    def __init__(self, values: list[str]) -> None:
        self._texts = pa.array(values, pa.large_string())

    def take(self, rows: np.ndarray) -> ExtensionArray:
        return pd.arrays.ArrowStringArray(self._texts.take(pa.array(rows, pa.int64())), dtype=_STR)


def _append(catalog: pd.DataFrame, overrides: pd.DataFrame) -> pd.DataFrame:
    """Override rows in the catalog's layout: no tiers (+inf thresholds), no daily windows."""
    if overrides.empty:
        return catalog
    return normalise_table(pd.concat([catalog, overrides], ignore_index=True))


def _factorize_text(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes and distinct values of a text column; missing values (None, NaN) read as ''."""
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    return codes.astype(np.int64), [value if isinstance(value, str) else "" for value in uniques]
