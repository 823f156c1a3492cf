"""Token counts x rates -> cost columns, for a whole batch at once.

Token convention (OpenTelemetry GenAI, see ``spanline/contract/schema.py``): ``input_tokens`` includes
cache reads and cache writes, ``output_tokens`` includes reasoning. genai-prices prices the same way
(it subtracts each separately priced part from its parent), so:

- uncached input = input - cache_read - cache_write, at the input rate;
- cache reads / writes at their own rate, or at the input rate when the price has none;
- output at the output rate, except reasoning when the price has a separate reasoning rate;
- context tiers are cliffs decided by *total* input tokens (cached included): above a tier's
  threshold (strictly greater, as in ``calc_unit_price``) every token of that kind pays the tier rate;
- a flat per-request fee (Perplexity Sonar's ``requests_kcount``) is charged once per span with tokens;
- a thinking-output rate (``output_thinking_mtok``, from the price corrections) replaces the output
  rate for every output token of a span with reasoning tokens: the provider bills a response made
  with thinking on at that rate (Gemini 2.5 Flash preview: $3.50 instead of $0.60).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from spanline.streams.pricing.layout import RATE_KEYS, TOKENS_PER_MTOK, rate_column, tier_columns, tier_slots

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Tokens:
    """A batch's token counts as float64 (exact below 2**53)."""

    input: FloatArray
    cache_read: FloatArray
    cache_write: FloatArray
    output: FloatArray
    reasoning: FloatArray

    @classmethod
    def of(cls, spans: pd.DataFrame) -> Tokens:
        def column(name: str) -> FloatArray:
            values: FloatArray = spans[name].to_numpy(dtype=np.float64)
            return values

        return cls(
            column("input_tokens"),
            column("cache_read_tokens"),
            column("cache_write_tokens"),
            column("output_tokens"),
            column("reasoning_tokens"),
        )

    def any(self) -> np.ndarray:
        return (
            (self.input > 0) | (self.output > 0) | (self.cache_read > 0) | (self.cache_write > 0) | (self.reasoning > 0)
        )


@dataclass(frozen=True)
class Costs:
    input: FloatArray
    cache_read: FloatArray
    cache_write: FloatArray
    output: FloatArray
    request: FloatArray


class RateArrays:
    """The price table's rate columns as numpy arrays, gathered by table row."""

    def __init__(self, table: pd.DataFrame) -> None:
        slots = tier_slots(list(table.columns))
        self._base: dict[str, FloatArray] = {key: table[rate_column(key)].to_numpy(np.float64) for key in RATE_KEYS}
        self._tiers: dict[str, list[tuple[FloatArray, ...]]] = {
            key: [tuple(table[c].to_numpy(np.float64) for c in tier_columns(key, slot)) for slot in range(1, slots + 1)]
            for key in RATE_KEYS
        }
        self._request: FloatArray = table["request_usd"].to_numpy(np.float64)
        self._thinking: FloatArray = table["output_thinking_mtok"].to_numpy(np.float64)

    def rate(self, key: str, rows: npt.NDArray[np.int64], total_input: FloatArray) -> FloatArray:
        """Per-MTok rate of ``key`` at each table row, tier chosen by total input; NaN = not priced."""
        rate = self._base[key][rows]
        for above, tier_rate in self._tiers[key]:
            rate = np.where(total_input > above[rows], tier_rate[rows], rate)
        return rate

    def costs(self, rows: npt.NDArray[np.int64], tokens: Tokens) -> Costs:
        """USD per span priced with table rows ``rows`` (one per span)."""
        input_rate = np.nan_to_num(self.rate("input", rows, tokens.input))
        output_rate = np.nan_to_num(self.rate("output", rows, tokens.input))

        def own_or(key: str, fallback: FloatArray) -> FloatArray:
            rate = self.rate(key, rows, tokens.input)
            return np.where(np.isnan(rate), fallback, rate)

        uncached = tokens.input - tokens.cache_read - tokens.cache_write
        plain_output = tokens.output - tokens.reasoning
        output = (
            plain_output * output_rate + tokens.reasoning * own_or("output_reasoning", output_rate)
        ) / TOKENS_PER_MTOK
        return Costs(
            input=uncached * input_rate / TOKENS_PER_MTOK,
            cache_read=tokens.cache_read * own_or("cache_read", input_rate) / TOKENS_PER_MTOK,
            cache_write=tokens.cache_write * own_or("cache_write", input_rate) / TOKENS_PER_MTOK,
            output=self._with_thinking_rate(output, rows, tokens),
            request=np.where(tokens.any(), self._request[rows], 0.0),
        )

    def _with_thinking_rate(self, output: FloatArray, rows: npt.NDArray[np.int64], tokens: Tokens) -> FloatArray:
        """Spans with reasoning tokens pay the thinking-output rate on all their output, where a price has one."""
        rate = self._thinking[rows]
        thinking = (tokens.reasoning > 0) & ~np.isnan(rate)
        return np.where(thinking, tokens.output * np.nan_to_num(rate) / TOKENS_PER_MTOK, output)
