"""Token counts x rates -> cost columns, for a whole batch at once.

Token convention (OpenTelemetry GenAI, see ``spanline/contract/schema.py``): ``input_tokens`` includes
cache reads and cache writes, ``output_tokens`` includes reasoning, and schema 1.1's token details
are parts of those counts. genai-prices prices the same way (it subtracts each separately priced
part from its parent), so a span's tokens are cut into disjoint classes (:data:`TOKEN_CLASSES`),
each priced at the first rate of its chain that the price has:

- uncached text input at the input rate; uncached audio / image input at the audio / image input
  rate, else input;
- cache reads at the cache-read rate, else input; cached audio / images at their own cache-read
  rate, else the cache-read rate, else their modality's input rate, else input;
- cache writes of 1 hour at the 1-hour rate, the rest (5-minute and unsplit writes: 5 minutes is
  the default TTL) at the 5-minute rate, else the cache-write rate, else input;
- output at the output rate, except reasoning, audio and image output at their own rate, else output;
- context tiers are cliffs decided by *total* input tokens (cached included): above a tier's
  threshold (strictly greater, as in ``calc_unit_price``) every token of that kind pays the tier rate;
- a flat per-request fee (Perplexity Sonar's ``requests_kcount``) is charged once per span with tokens;
- a thinking-output rate (``output_thinking_mtok``, from the price corrections) replaces the output
  rate for every output token of a span with reasoning tokens: the provider bills a response made
  with thinking on at that rate (Gemini 2.5 Flash preview: $3.50 instead of $0.60).

Where a price has a modality rate but no cache-read rate for that modality (e.g. a cache-read rate
for text only), genai-prices charges the cached audio tokens at *both* the audio and the cache-read
rate; a cached token is charged once here, at the cache-read rate (no price of the bundled catalog
has that shape).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
import pandas as pd

from spanline.streams.pricing.layout import RATE_KEYS, TOKENS_PER_MTOK, rate_column, tier_columns, tier_slots

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Tokens:
    """A batch's token counts as float64 (exact below 2**53), named as the span fields less ``_tokens``."""

    input: FloatArray
    cache_read: FloatArray
    cache_write: FloatArray
    output: FloatArray
    reasoning: FloatArray
    cache_write_5m: FloatArray
    cache_write_1h: FloatArray
    input_audio: FloatArray
    cache_audio_read: FloatArray
    input_image: FloatArray
    cache_image_read: FloatArray
    output_audio: FloatArray
    output_image: FloatArray

    @classmethod
    def of(cls, spans: pd.DataFrame) -> Tokens:
        """Counts of ``spans``; a schema 1.1 detail column the frame lacks is 0 (priced as its parent)."""

        def column(name: str) -> FloatArray:
            if name not in spans:
                return np.zeros(len(spans), dtype=np.float64)
            values: FloatArray = spans[name].to_numpy(dtype=np.float64)
            return values

        return cls(**{f.name: column(f"{f.name}_tokens") for f in fields(cls)})

    def any(self) -> np.ndarray:
        """Spans with any token: every detail is part of a count, so the counts decide."""
        return (
            (self.input > 0) | (self.output > 0) | (self.cache_read > 0) | (self.cache_write > 0) | (self.reasoning > 0)
        )


@dataclass(frozen=True)
class TokenClass:
    """Disjoint tokens of one price: the cost column they add to and their rate chain."""

    name: str
    cost: str  # input, cache_read, cache_write or output
    rates: tuple[str, ...]  # rate keys, first one the price has wins

    def count(self, t: Tokens) -> FloatArray:
        return _COUNTS[self.name](t)


_COUNTS: dict[str, Callable[[Tokens], FloatArray]] = {
    "input_text": lambda t: (
        t.input
        - t.cache_read
        - t.cache_write
        - (t.input_audio - t.cache_audio_read)
        - (t.input_image - t.cache_image_read)
    ),
    "input_audio": lambda t: t.input_audio - t.cache_audio_read,
    "input_image": lambda t: t.input_image - t.cache_image_read,
    "cache_read_text": lambda t: t.cache_read - t.cache_audio_read - t.cache_image_read,
    "cache_audio_read": lambda t: t.cache_audio_read,
    "cache_image_read": lambda t: t.cache_image_read,
    "cache_write_5m": lambda t: t.cache_write - t.cache_write_1h,
    "cache_write_1h": lambda t: t.cache_write_1h,
    "output_text": lambda t: t.output - t.reasoning - t.output_audio - t.output_image,
    "output_reasoning": lambda t: t.reasoning,
    "output_audio": lambda t: t.output_audio,
    "output_image": lambda t: t.output_image,
}

#: Every token of a valid span is in exactly one class (the schema's cross-field rules make each
#: count >= 0); a class's cost goes to the cost column of the count it is part of.
TOKEN_CLASSES: tuple[TokenClass, ...] = (
    TokenClass("input_text", "input", ("input",)),
    TokenClass("input_audio", "input", ("input_audio", "input")),
    TokenClass("input_image", "input", ("input_image", "input")),
    TokenClass("cache_read_text", "cache_read", ("cache_read", "input")),
    TokenClass("cache_audio_read", "cache_read", ("cache_audio_read", "cache_read", "input_audio", "input")),
    TokenClass("cache_image_read", "cache_read", ("cache_image_read", "cache_read", "input_image", "input")),
    TokenClass("cache_write_5m", "cache_write", ("cache_write_5m", "cache_write", "input")),
    TokenClass("cache_write_1h", "cache_write", ("cache_write_1h", "cache_write", "input")),
    TokenClass("output_text", "output", ("output",)),
    TokenClass("output_reasoning", "output", ("output_reasoning", "output")),
    TokenClass("output_audio", "output", ("output_audio", "output")),
    TokenClass("output_image", "output", ("output_image", "output")),
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
        rates: dict[str, FloatArray] = {}

        def rate(key: str) -> FloatArray:
            if key not in rates:
                found = self.rate(key, rows, tokens.input)
                # input and output end every chain: a price without them charges 0 for those tokens
                rates[key] = np.nan_to_num(found) if key in ("input", "output") else found
            return rates[key]

        totals = {
            name: np.zeros(len(rows), dtype=np.float64) for name in ("input", "cache_read", "cache_write", "output")
        }
        for token_class in TOKEN_CLASSES:
            count = token_class.count(tokens)
            if not count.any():
                continue
            chosen = rate(token_class.rates[-1])
            for key in reversed(token_class.rates[:-1]):
                own = rate(key)
                chosen = np.where(np.isnan(own), chosen, own)
            totals[token_class.cost] += count * chosen / TOKENS_PER_MTOK
        return Costs(
            input=totals["input"],
            cache_read=totals["cache_read"],
            cache_write=totals["cache_write"],
            output=self._with_thinking_rate(totals["output"], rows, tokens),
            request=np.where(tokens.any(), self._request[rows], 0.0),
        )

    def _with_thinking_rate(self, output: FloatArray, rows: npt.NDArray[np.int64], tokens: Tokens) -> FloatArray:
        """Spans with reasoning tokens pay the thinking-output rate on all their output, where a price has one."""
        rate = self._thinking[rows]
        thinking = (tokens.reasoning > 0) & ~np.isnan(rate)
        return np.where(thinking, tokens.output * np.nan_to_num(rate) / TOKENS_PER_MTOK, output)
