"""The metrics alert rules can watch, computed column-wise from a minute (or hour) frame.

A frame has one row per grain group (tenant × service × feature × provider × model × route ×
kind) with counter columns, map columns (dict per row) and, in the stream, DDSketch
columns. Every metric reduces to per-row *parts* that sum across rows and minutes:

* ``ratio``      value = numerator / denominator (error rate, cache hit rate, ...)
* ``total``      value = numerator summed over the window (spend); the denominator is traffic
* ``percentile`` value = a quantile of the merged sketches (p95 TTFT); denominator = samples
* ``new_keys``   value = calls whose map key (e.g. a ``model_response``) was not seen before

A metric with ``per_key`` reads maps keyed by something outside the grain (an index name): its
rows are first exploded into one row per map key (:func:`keyed_rows`), the key becoming the
scope dimension ``per_key`` and each map's value a plain column the parts read.

The denominator is always the traffic figure a rule's ``min_traffic`` is compared with.
Summable parts are what make baselines cheap: an hour is the sum of its minutes, a week the sum
of its hours, and the ClickHouse rollups (same columns) bootstrap them after a fresh start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from spanline.windows.aggregate import DIMENSIONS, SLOTS

#: Slot map keys ("0".."5": the 10-second slots of a minute, spanline/windows/aggregate.py).
SLOT_KEYS: tuple[str, ...] = tuple(str(slot) for slot in range(SLOTS))
#: The slot map of first attempts (LLM and tool calls): every per-slot rate's denominator.
SLOT_DENOMINATOR = "first_attempts_by_slot"

Kind = Literal["ratio", "total", "percentile", "new_keys"]
Unit = Literal["ratio", "usd", "ms", "s", "calls", "steps", "partitions", "attempts", "tokens", "documents", "chunks"]
Read = Callable[[pd.DataFrame, str | None], pd.Series]


@dataclass(frozen=True)
class Column:
    """A per-row figure of a metric and the frame columns it reads (``reads``): a noise reference
    concatenates a hundred minute frames, and copying only these is most of its cost."""

    reads: tuple[str, ...]
    compute: Read

    def __call__(self, frame: pd.DataFrame, key: str | None) -> pd.Series:
        return self.compute(frame, key)


def col(name: str) -> Column:
    """A counter column (0 when the frame predates it, e.g. an older rollup)."""

    def read(frame: pd.DataFrame, _key: str | None) -> pd.Series:
        if name not in frame:
            return pd.Series(0.0, index=frame.index)
        return frame[name].fillna(0).astype("float64")

    return Column((name,), read)


def total_of(*names: str) -> Column:
    """The sum of several counter columns."""

    def read(frame: pd.DataFrame, key: str | None) -> pd.Series:
        return sum((col(name)(frame, key) for name in names), pd.Series(0.0, index=frame.index))

    return Column(names, read)


def difference(name: str, minus: str) -> Column:
    """One counter less another that it includes (never below 0)."""

    def read(frame: pd.DataFrame, key: str | None) -> pd.Series:
        return (col(name)(frame, key) - col(minus)(frame, key)).clip(lower=0.0)

    return Column((name, minus), read)


def map_entry(name: str) -> Column:
    """One key of a map column (dict per row); the key comes from the rule (``key:``)."""

    def read(frame: pd.DataFrame, key: str | None) -> pd.Series:
        if name not in frame:
            return pd.Series(0.0, index=frame.index)
        return frame[name].map(lambda entries: float((entries or {}).get(key, 0))).astype("float64")

    return Column((name,), read)


def map_total(name: str) -> Column:
    """The sum of a map column's values per row (all its keys)."""

    def read(frame: pd.DataFrame, _key: str | None) -> pd.Series:
        if name not in frame:
            return pd.Series(0.0, index=frame.index)
        return frame[name].map(lambda entries: float(sum((entries or {}).values()))).astype("float64")

    return Column((name,), read)


def slot_counts(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A slot map column as a rows × SLOTS array of counts (0 for a slot without calls), built by
    pandas from the dicts at once; all NaN when the frame has no such column."""
    if name not in frame:
        return np.full((len(frame), SLOTS), np.nan)
    table = pd.DataFrame(frame[name].tolist(), columns=list(SLOT_KEYS), dtype="float64")
    counts: np.ndarray = table.fillna(0.0).to_numpy()
    return counts


def _contained(frame: pd.DataFrame, key: str | None) -> pd.Series:
    """Requests less escalations (never below 0 per row: a row holds one of the two kinds)."""
    return col("requests")(frame, key) - map_total("escalations_by_reason")(frame, key)


CONTAINED = Column(("requests", "escalations_by_reason"), _contained)


@dataclass(frozen=True)
class Metric:
    """How one metric is computed; ``kinds`` selects the grain rows it reads (None = all)."""

    name: str
    kind: Kind
    unit: Unit
    description: str
    kinds: tuple[str, ...] | None
    numerator: Column | None = None
    denominator: Column = col("spans")
    sketch: str | None = None
    quantile: float | None = None
    map_column: str | None = None
    needs_key: bool = False
    #: Scope dimension the keys of ``key_maps`` become (see keyed_rows); None = a grain metric.
    per_key: str | None = None
    key_maps: tuple[str, ...] = ()
    #: Slot maps of the numerator (the first less the rest) over SLOT_DENOMINATOR: the metric per
    #: 10-second slot, which a burn-rate tier's ``sustained`` reads; () = no per-slot figures.
    slot_numerator: tuple[str, ...] = ()

    @property
    def quantile_level(self) -> float:
        """The quantile a percentile metric reads from its sketches (e.g. 0.95)."""
        if self.quantile is None:
            raise ValueError(f"metric {self.name!r} has no quantile (it is a {self.kind} metric)")
        return self.quantile

    @property
    def reads(self) -> tuple[str, ...]:
        """The frame columns its parts read besides the grain dimensions."""
        numerator = self.numerator.reads if self.numerator is not None else ()
        return tuple(dict.fromkeys((*numerator, *self.denominator.reads, *self.key_maps)))

    def parts(self, rows: pd.DataFrame, key: str | None = None) -> pd.DataFrame:
        """Per-row summable parts ``num``/``den`` of ``rows`` (already limited to ``kinds``; index kept)."""
        numerator = self.numerator(rows, key) if self.numerator is not None else pd.Series(0.0, index=rows.index)
        return pd.DataFrame({"num": numerator, "den": self.denominator(rows, key)}, index=rows.index)

    def slot_parts(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """num and den per row and 10-second slot (rows × SLOTS), NaN where the rows carry no slot
        maps (a minute bootstrapped from the rollups, which have no slot columns)."""
        first, *less = (slot_counts(rows, name) for name in self.slot_numerator)
        numerator = np.clip(first - sum(less, np.zeros_like(first)), 0.0, None)
        return numerator, slot_counts(rows, SLOT_DENOMINATOR)

    def value(self, num: pd.Series | np.ndarray, den: pd.Series | np.ndarray) -> np.ndarray:
        """The metric from summed parts (ratio and total metrics)."""
        num = np.asarray(num, dtype="float64")
        den = np.asarray(den, dtype="float64")
        if self.kind == "ratio":
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        return num


def keyed_rows(rows: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """One row per (grain row, key of the metric's first map): the grain columns (and ``minute`` or
    ``hour``), the key as column ``metric.per_key`` and each of ``metric.key_maps`` as that key's
    number (0 where the map lacks it). Grain metrics' rows pass through."""
    if metric.per_key is None:
        return rows
    kept = [c for c in (*DIMENSIONS, "minute", "hour") if c in rows.columns]
    columns = [*kept, metric.per_key, *metric.key_maps]
    if rows.empty or metric.key_maps[0] not in rows:
        return pd.DataFrame(columns=columns)
    keys = rows[metric.key_maps[0]].map(lambda entries: list((entries or {}).keys()))
    exploded = rows.assign(**{metric.per_key: keys}).explode(metric.per_key).dropna(subset=[metric.per_key])
    out = exploded[[*kept, metric.per_key]].copy()
    for name in metric.key_maps:
        maps = exploded[name] if name in exploded else pd.Series([{}] * len(exploded), index=exploded.index)
        out[name] = [float((m or {}).get(k, 0)) for m, k in zip(maps, exploded[metric.per_key], strict=True)]
    return out.reset_index(drop=True)


LLM = ("llm",)
#: Logical calls: spans less retries (attempt > 0), on rows of one kind.
FIRST_ATTEMPTS = difference("spans", "retries")
#: The steps of a request a stage budget can watch (spanline/contracts.py STAGE_KINDS).
STAGES = ("llm", "embedding", "retrieval", "rerank", "tool", "cache", "agent_step")


def _per_index_build(count: Literal["documents", "chunks"]) -> Metric:
    """``documents`` or ``chunks`` an index reported per build (index_build spans), per index_name."""
    return Metric(
        f"index_{count}",
        "ratio",
        count,
        f"{count} an index reported per build (index_build spans), per index_name",
        ("index_build",),
        col(f"index_{count}_by_index"),
        denominator=col("index_builds_by_index"),
        per_key="index_name",
        key_maps=("index_builds_by_index", f"index_{count}_by_index"),
    )


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "ttft_p95_ms",
            "percentile",
            "ms",
            "p95 time to first token of LLM calls",
            LLM,
            sketch="ttft_ms_sketch",
            quantile=0.95,
        ),
        Metric(
            "latency_p95_ms",
            "percentile",
            "ms",
            "p95 duration of root requests",
            ("request",),
            sketch="duration_ms_sketch",
            quantile=0.95,
        ),
        Metric(
            "stage_p95_ms",
            "percentile",
            "ms",
            "p95 duration of one stage of requests (scope by kind: retrieval, rerank, llm, ...)",
            STAGES,
            sketch="duration_ms_sketch",
            quantile=0.95,
        ),
        _per_index_build("documents"),
        _per_index_build("chunks"),
        Metric(
            "containment_rate",
            "ratio",
            "ratio",
            "requests completed without a human escalation (escalation spans) / requests",
            ("request", "escalation"),
            CONTAINED,
            denominator=col("requests"),
        ),
        Metric(
            "positive_feedback_rate",
            "ratio",
            "ratio",
            "positive end-user feedback (feedback spans with eval_passed) / feedback",
            ("feedback",),
            map_total("positive_feedback_by_name"),
            denominator=map_total("feedback_by_name"),
        ),
        # provider rate limits count what the provider counts: every attempt and its tokens
        Metric(
            "llm_tokens",
            "total",
            "tokens",
            "input + output tokens of LLM calls (what a provider's tokens-per-minute limit counts)",
            LLM,
            total_of("input_tokens", "output_tokens"),
            denominator=col("llm_calls"),
        ),
        Metric(
            "llm_requests",
            "total",
            "calls",
            "LLM calls, retries included (what a provider's requests-per-minute limit counts)",
            LLM,
            col("llm_calls"),
            denominator=col("llm_calls"),
        ),
        # Rates per logical call: failed first attempts / first attempts (calls less retries), so
        # a failing call's retries do not count it again (a 30 s outage: 27.6 % per attempt, 13 %
        # per call). 429s are the rate-limiting rule's (another runbook): a quota is not an outage.
        Metric(
            "error_rate",
            "ratio",
            "ratio",
            "first attempts of LLM calls failing other than by rate limits (429) / first attempts",
            LLM,
            difference("first_attempt_errors", "first_attempt_rate_limited"),
            denominator=FIRST_ATTEMPTS,
            slot_numerator=("first_attempt_errors_by_slot", "first_attempt_rate_limited_by_slot"),
        ),
        Metric(
            "rate_limited_rate",
            "ratio",
            "ratio",
            "first attempts of LLM calls answered HTTP 429 or rate_limited / first attempts",
            LLM,
            col("first_attempt_rate_limited"),
            denominator=FIRST_ATTEMPTS,
            slot_numerator=("first_attempt_rate_limited_by_slot",),
        ),
        Metric(
            "retry_amplification",
            "ratio",
            "attempts",
            "LLM call attempts per logical call (attempts / first attempts): retries' own signal",
            LLM,
            col("spans"),
            denominator=FIRST_ATTEMPTS,
        ),
        Metric(
            "cost_usd",
            "total",
            "usd",
            "spend of every span (LLM, embedding, rerank, ...)",
            None,
            col("cost_usd"),
            denominator=col("spans"),
        ),
        Metric(
            "cost_per_request_usd",
            "ratio",
            "usd",
            "all spend / root requests",
            None,
            col("cost_usd"),
            denominator=col("requests"),
        ),
        Metric(
            "cache_hit_rate",
            "ratio",
            "ratio",
            "cache hits / cache lookups",
            ("cache",),
            col("cache_hits"),
            denominator=col("cache_lookups"),
        ),
        Metric(
            "tier_share",
            "ratio",
            "ratio",
            "share of LLM calls routed to the model tier in `key`",
            LLM,
            map_entry("llm_calls_by_tier"),
            needs_key=True,
        ),
        Metric(
            "tool_error_rate",
            "ratio",
            "ratio",
            "failed first attempts of tool calls / first attempts of tool calls",
            ("tool",),
            col("first_attempt_errors"),
            denominator=FIRST_ATTEMPTS,
            slot_numerator=("first_attempt_errors_by_slot",),
        ),
        Metric(
            "steps_per_trace",
            "ratio",
            "steps",
            "agent steps / root requests",
            ("agent_step", "request"),
            col("agent_steps"),
            denominator=col("requests"),
        ),
        Metric(
            "eval_pass_rate",
            "ratio",
            "ratio",
            "passed evals / evals",
            ("eval",),
            col("evals_passed"),
            denominator=col("evals"),
        ),
        Metric(
            "hallucination_rate",
            "ratio",
            "ratio",
            "failed faithfulness/hallucination/groundedness evals",
            ("eval",),
            col("hallucinations"),
            denominator=col("hallucination_evals"),
        ),
        # per index: a tenant's indexes fail one at a time, and a collapse of one of three would
        # be a third of the drop in the tenant's mean (averaged away under the rule's threshold)
        Metric(
            "recall_at_k",
            "ratio",
            "ratio",
            "mean recall@k score of retrieval canaries, per index_name the canary names",
            ("eval",),
            col("recall_sum_by_index"),
            denominator=col("recall_evals_by_index"),
            per_key="index_name",
            key_maps=("recall_evals_by_index", "recall_sum_by_index"),
        ),
        Metric(
            "embedding_mismatches",
            "total",
            "calls",
            "spans whose query embedding model differs from the index's",
            None,
            col("embedding_mismatches"),
            denominator=total_of("retrievals", "embedding_mismatches"),
        ),
        Metric(
            "context_exhaustion_rate",
            "ratio",
            "ratio",
            "(context-length errors + truncations) / LLM calls",
            LLM,
            total_of("context_length_errors", "context_truncations"),
        ),
        Metric(
            "new_model_versions",
            "new_keys",
            "calls",
            "LLM calls answered by a model_response not seen for this requested model in the lookback",
            LLM,
            map_column="responses_by_model",
        ),
        Metric(
            "dlq_rate",
            "ratio",
            "ratio",
            "spans dead-lettered / spans consumed (worker PipelineStats)",
            None,
            col("dead_letters"),
            denominator=col("spans_in"),
        ),
        Metric(
            "consumer_lag_s",
            "ratio",
            "s",
            "mean seconds the worker trails traffic by, beyond its smallest lag of the last hour",
            None,
            col("lag_s"),
            denominator=col("windows"),
        ),
        Metric(
            "silent_partitions",
            "ratio",
            "partitions",
            "mean number of partitions whose windows stopped arriving (spanline/windows/merger.py)",
            None,
            col("silent_partitions"),
            denominator=col("windows"),
        ),
    )
}

#: Metrics read from the worker's pipeline figures rather than from span minutes.
PIPELINE_METRICS = ("dlq_rate", "consumer_lag_s", "silent_partitions")
