"""The one aggregation of stored span rows into per-minute partials.

Used by the live path (each stored batch) and by recovery (rows read back from ClickHouse),
so a rebuilt window equals the one that was lost. Column-wise: one group code per span from
a single groupby on the grain, then ``np.bincount`` per counter and small integer groupbys for
maps and sketch bins. The same partials fill the ``spans_minute`` rollup (streams/rollup.py
writes them with the raw insert), so windows, alerts and dashboards share this one definition.
The index-build, per-index recall, feedback and escalation maps and the 10-second slot maps
(ALERT_ONLY_MAPS) are the exception: only the alert windows carry them (a few spans a minute,
which dashboards read raw; slots finer than the rollups' minute), so the rollups have no column
for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import numpy.typing as npt
import pandas as pd

from spanline.windows.sketches import bucket_keys

#: The grain's dimensions; with ``minute`` (UTC minute start, epoch seconds) they key a group.
DIMENSIONS: tuple[str, ...] = ("tenant_id", "service", "feature", "provider", "model_requested", "route", "kind")
GRAIN: tuple[str, ...] = (*DIMENSIONS, "minute")
#: Integer counters and float sums per group, in output order.
COUNTS: tuple[str, ...] = (
    "spans",
    "requests",
    "successful_requests",
    "errors",
    "rate_limited",
    "retries",
    "first_attempt_errors",
    "first_attempt_rate_limited",
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "unpriced",
    "cache_lookups",
    "cache_hits",
    "context_truncations",
    "context_length_errors",
    "refusals",
    "tool_calls",
    "tool_errors",
    "evals",
    "evals_passed",
    "hallucination_evals",
    "hallucinations",
    "recall_evals",
    "retrievals",
    "embedding_mismatches",
    "agent_steps",
)
SUMS: tuple[str, ...] = ("cost_usd", "retry_cost_usd", "recall_sum")
#: Map columns: name -> whether values are counts (else float sums).
MAPS: dict[str, bool] = {
    "errors_by_type": True,
    "cache_lookups_by_layer": True,
    "cache_hits_by_layer": True,
    "llm_calls_by_tier": True,
    "cost_by_tier": False,
    "llm_calls_by_reason": True,
    "responses_by_model": True,
    "tool_calls_by_tool": True,
    "tool_errors_by_tool": True,
    "cost_by_prompt": False,
    "index_builds_by_index": True,
    "index_documents_by_index": True,
    "index_chunks_by_index": True,
    "feedback_by_name": True,
    "positive_feedback_by_name": True,
    "escalations_by_reason": True,
    "recall_evals_by_index": True,
    "recall_sum_by_index": False,
    "retrievals_by_index": True,
    "first_attempts_by_slot": True,
    "first_attempt_errors_by_slot": True,
    "first_attempt_rate_limited_by_slot": True,
}
#: Maps of index_build spans per index_name (builds, and the documents and chunks they reported),
#: of feedback spans per eval_name (all, positive), of escalation spans per reason (name), and of
#: recall@k evals (count, summed score) and retrievals per index_name: a tenant's retrieval
#: quality judged index by index ('' = a span that names no index); and first attempts of LLM and
#: tool calls (all, failed, rate limited) per 10-second slot of the minute ("0".."5", from the
#: span's start): a burn-rate tier's ``sustained`` tells a 20-second wall from a 2-minute storm
#: that a minute's counts make look alike (alerts/conditions.py).
ALERT_ONLY_MAPS: tuple[str, ...] = (
    "index_builds_by_index",
    "index_documents_by_index",
    "index_chunks_by_index",
    "feedback_by_name",
    "positive_feedback_by_name",
    "escalations_by_reason",
    "recall_evals_by_index",
    "recall_sum_by_index",
    "retrievals_by_index",
    "first_attempts_by_slot",
    "first_attempt_errors_by_slot",
    "first_attempt_rate_limited_by_slot",
)
#: Seconds per slot of the ``*_by_slot`` maps (a minute has 60 // SLOT_SECONDS of them).
SLOT_SECONDS = 10
SLOTS = 60 // SLOT_SECONDS
#: Sketch columns (values in the unit of their name: ms or tokens).
SKETCHES: tuple[str, ...] = ("duration_ms", "ttft_ms", "tpot_ms", "input_tokens")
HALLUCINATION_EVALS = ("faithfulness", "hallucination", "groundedness")
#: sketch name (SKETCHES) -> (span mask, values) of the spans each sketch takes.
SketchInputs = dict[str, tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]]
#: Columns of the ``spans`` table the aggregation reads (recovery selects exactly these).
ROW_COLUMNS: tuple[str, ...] = (
    *DIMENSIONS,
    "start_time",
    "status",
    "error_type",
    "http_status",
    "attempt",
    "cost_usd",
    "cost_known",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_hit",
    "cache_layer",
    "context_truncated",
    "eval_name",
    "eval_passed",
    "eval_score",
    "model_tier",
    "routing_reason",
    "model_response",
    "tool_name",
    "prompt_id",
    "prompt_version",
    "embedding_model",
    "index_embedding_model",
    "index_name",
    "index_documents",
    "index_chunks",
    "name",
    "duration_ms",
    "ttft_ms",
    "tpot_ms",
    "parent_span_id",  # not aggregated: the windows' trace frontier reads which rows are roots
    "kafka_offset",
)


@dataclass
class Partials:
    """Aggregates of some spans. ``groups`` has one row per grain group (its index is the group
    id used by the other frames); ``counters`` is aligned with it row by row. ``map`` and
    ``sketch`` are positions in MAPS and SKETCHES; text columns stay plain object arrays
    (pandas would otherwise convert every small frame's strings to Arrow)."""

    groups: pd.DataFrame  # GRAIN columns
    counters: pd.DataFrame  # COUNTS + SUMS
    maps: pd.DataFrame  # group, map, key, value
    bins: pd.DataFrame  # group, sketch, sign, key, count
    stats: pd.DataFrame  # group, sketch, sum, min, max


def _objects(values: np.ndarray) -> pd.Series:
    return pd.Series(values, dtype=object, copy=False)


def epoch_ms(times: pd.Series) -> npt.NDArray[np.int64]:
    """Timestamps (aware or naive UTC, any unit) as int64 epoch milliseconds."""
    times = pd.to_datetime(times, utc=True)
    ms: npt.NDArray[np.int64] = (
        times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ms]").astype(np.int64)
    )
    return ms


@overload
def minute_of(ms: np.int64) -> np.int64: ...
@overload
def minute_of(ms: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def minute_of(ms: np.int64 | npt.NDArray[np.int64]) -> np.int64 | npt.NDArray[np.int64]:
    """UTC minute start, epoch seconds, of epoch-millisecond timestamps."""
    return (ms // 60_000) * 60


class _Labels:
    """A text column as integer codes into its distinct values (NULL counts as ''): comparisons
    and map keys work on the few distinct values, never on every row's string."""

    def __init__(self, column: pd.Series) -> None:
        if column.hasnans:
            column = column.astype(object).where(column.notna(), "")
        codes, uniques = pd.factorize(column)
        self.codes: npt.NDArray[np.int64] = codes.astype(np.int64)
        self.uniques: npt.NDArray[np.object_] = np.asarray(uniques, dtype=object).astype(str).astype(object)

    def where(self, test: Callable[[np.ndarray], np.ndarray]) -> npt.NDArray[np.bool_]:
        """Rows whose value passes ``test`` (a vectorised predicate over the distinct values)."""
        if not len(self.uniques):
            return np.zeros(len(self.codes), dtype=bool)
        return np.asarray(test(self.uniques), dtype=bool)[self.codes]

    def eq(self, value: str) -> npt.NDArray[np.bool_]:
        return self.where(lambda uniques: uniques == value)


def _number(rows: pd.DataFrame, name: str) -> npt.NDArray[np.float64]:
    """Float column with NaN for NULL, whatever the nullable dtype."""
    values: npt.NDArray[np.float64] = (
        pd.to_numeric(rows[name], errors="coerce").astype("float64").to_numpy(na_value=np.nan)
    )
    return values


def _truth(rows: pd.DataFrame, name: str, value: bool) -> npt.NDArray[np.bool_]:
    """True where a nullable bool column equals ``value`` (NULL never does)."""
    column = rows[name].astype("boolean")
    flags: npt.NDArray[np.bool_] = (column == value).fillna(False).to_numpy(dtype=bool)
    return flags


def _pairs(first: _Labels, second: _Labels, separator: str) -> _Labels:
    """Labels of 'first<separator>second', built from the distinct pairs only."""
    pairs = first.codes * max(len(second.uniques), 1) + second.codes
    distinct, codes = np.unique(pairs, return_inverse=True)
    labels = object.__new__(_Labels)
    labels.codes = codes.astype(np.int64)
    width = max(len(second.uniques), 1)
    labels.uniques = np.array(
        [f"{first.uniques[p // width]}{separator}{second.uniques[p % width]}" for p in distinct], dtype=object
    )
    return labels


def _slots(rows: pd.DataFrame) -> _Labels:
    """Each span's 10-second slot of its minute (from start_time) as labels "0".."5"."""
    labels = object.__new__(_Labels)
    labels.codes = epoch_ms(rows["start_time"]) % 60_000 // (SLOT_SECONDS * 1000)
    labels.uniques = np.array([str(slot) for slot in range(SLOTS)], dtype=object)
    return labels


def span_flags(rows: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-span counter contributions, and the labels and masks the maps and sketches key on."""
    text = {
        name: _Labels(rows[name])
        for name in (
            "kind",
            "status",
            "error_type",
            "eval_name",
            "cache_layer",
            "model_tier",
            "routing_reason",
            "model_response",
            "tool_name",
            "prompt_id",
            "prompt_version",
            "embedding_model",
            "index_embedding_model",
            "index_name",
            "name",
        )
    }
    kind, error_type = text["kind"], text["error_type"]
    request, llm, cache = kind.eq("request"), kind.eq("llm"), kind.eq("cache")
    tool, evaluation, error = kind.eq("tool"), kind.eq("eval"), text["status"].eq("error")
    retry = _number(rows, "attempt") > 0
    rate_limited = (_number(rows, "http_status") == 429) | error_type.eq("rate_limited")
    cost = _number(rows, "cost_usd")
    recall = evaluation & text["eval_name"].where(lambda names: np.char.startswith(names.astype(str), "recall@"))
    hallucination_eval = evaluation & text["eval_name"].where(lambda names: np.isin(names, HALLUCINATION_EVALS))
    embedding, index_embedding = text["embedding_model"], text["index_embedding_model"]
    embedding_text, index_text = embedding.uniques[embedding.codes], index_embedding.uniques[index_embedding.codes]
    flags = {
        "spans": np.ones(len(rows)),
        "requests": request,
        "successful_requests": request & text["status"].eq("ok"),
        "errors": error,
        "rate_limited": rate_limited,
        "retries": retry,
        "first_attempt_errors": error & ~retry,
        "first_attempt_rate_limited": rate_limited & ~retry,
        "llm_calls": llm,
        **{
            name: _number(rows, name)
            for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
        },
        "unpriced": ~_truth(rows, "cost_known", True),
        "cache_lookups": cache,
        "cache_hits": cache & _truth(rows, "cache_hit", True),
        "context_truncations": _truth(rows, "context_truncated", True),
        "context_length_errors": error_type.eq("context_length_exceeded"),
        "refusals": llm & error_type.eq("refusal"),
        "tool_calls": tool,
        "tool_errors": tool & error,
        "evals": evaluation,
        "evals_passed": evaluation & _truth(rows, "eval_passed", True),
        "hallucination_evals": hallucination_eval,
        "hallucinations": hallucination_eval & _truth(rows, "eval_passed", False),
        "recall_evals": recall,
        "retrievals": kind.eq("retrieval"),
        "embedding_mismatches": ~embedding.eq("") & ~index_embedding.eq("") & (embedding_text != index_text),
        "agent_steps": kind.eq("agent_step"),
        "cost_usd": cost,
        "retry_cost_usd": np.where(retry, cost, 0.0),
        "recall_sum": np.where(recall, np.nan_to_num(_number(rows, "eval_score")), 0.0),
    }
    context = {
        **text,
        "prompt": _pairs(text["prompt_id"], text["prompt_version"], "@"),
        "cost": cost,
        "error": error,
        "llm": llm,
        "cache": cache,
        "tool": tool,
        "cache_known": rows["cache_hit"].notna().to_numpy(dtype=bool),
        "cache_hit": _truth(rows, "cache_hit", True),
        "index_build": kind.eq("index_build"),
        "feedback": kind.eq("feedback"),
        "positive": _truth(rows, "eval_passed", True),
        "escalation": kind.eq("escalation"),
        "index_documents": np.nan_to_num(_number(rows, "index_documents")),
        "index_chunks": np.nan_to_num(_number(rows, "index_chunks")),
        "recall": recall,
        "recall_score": flags["recall_sum"],
        "retrieval": flags["retrievals"],
        "slot": _slots(rows),
        "budgeted_first_attempt": (llm | tool) & ~retry,
        "first_attempt_error": flags["first_attempt_errors"],
        "first_attempt_rate_limited": flags["first_attempt_rate_limited"],
    }
    return flags, context


#: name -> (span mask, key labels, value column or None for a count), over span_flags' context.
_MAP_RULES: dict[str, Callable[[dict[str, Any]], tuple[np.ndarray, _Labels, np.ndarray | None]]] = {
    "errors_by_type": lambda c: (c["error"], c["error_type"], None),
    "cache_lookups_by_layer": lambda c: (c["cache"] & c["cache_known"], c["cache_layer"], None),
    "cache_hits_by_layer": lambda c: (c["cache"] & c["cache_hit"], c["cache_layer"], None),
    "llm_calls_by_tier": lambda c: (c["llm"], c["model_tier"], None),
    "cost_by_tier": lambda c: (c["llm"], c["model_tier"], c["cost"]),
    "llm_calls_by_reason": lambda c: (c["llm"], c["routing_reason"], None),
    "responses_by_model": lambda c: (c["llm"] & ~c["model_response"].eq(""), c["model_response"], None),
    "tool_calls_by_tool": lambda c: (c["tool"], c["tool_name"], None),
    "tool_errors_by_tool": lambda c: (c["tool"] & c["error"], c["tool_name"], None),
    "cost_by_prompt": lambda c: (~c["prompt_id"].eq(""), c["prompt"], c["cost"]),
    "index_builds_by_index": lambda c: (c["index_build"], c["index_name"], None),
    "index_documents_by_index": lambda c: (c["index_build"], c["index_name"], c["index_documents"]),
    "index_chunks_by_index": lambda c: (c["index_build"], c["index_name"], c["index_chunks"]),
    "feedback_by_name": lambda c: (c["feedback"], c["eval_name"], None),
    "positive_feedback_by_name": lambda c: (c["feedback"] & c["positive"], c["eval_name"], None),
    "escalations_by_reason": lambda c: (c["escalation"], c["name"], None),
    "recall_evals_by_index": lambda c: (c["recall"], c["index_name"], None),
    "recall_sum_by_index": lambda c: (c["recall"], c["index_name"], c["recall_score"]),
    "retrievals_by_index": lambda c: (c["retrieval"], c["index_name"], None),
    "first_attempts_by_slot": lambda c: (c["budgeted_first_attempt"], c["slot"], None),
    "first_attempt_errors_by_slot": lambda c: (
        c["budgeted_first_attempt"] & c["first_attempt_error"],
        c["slot"],
        None,
    ),
    "first_attempt_rate_limited_by_slot": lambda c: (
        c["budgeted_first_attempt"] & c["first_attempt_rate_limited"],
        c["slot"],
        None,
    ),
}


def _sketch_values(rows: pd.DataFrame, context: dict[str, Any]) -> SketchInputs:
    """sketch -> (span mask, values): ttft/tpot where known, input tokens of LLM calls."""
    values = {name: _number(rows, name) for name in ("duration_ms", "ttft_ms", "tpot_ms", "input_tokens")}
    return {
        "duration_ms": (~np.isnan(values["duration_ms"]), values["duration_ms"]),
        "ttft_ms": (~np.isnan(values["ttft_ms"]), values["ttft_ms"]),
        "tpot_ms": (~np.isnan(values["tpot_ms"]), values["tpot_ms"]),
        "input_tokens": (context["llm"], values["input_tokens"]),
    }


def _sum_by(keys: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct int64 keys and the sum of weights (or the count) per key."""
    distinct, inverse = np.unique(keys, return_inverse=True)
    return distinct, np.bincount(inverse, weights=weights, minlength=len(distinct))


def aggregate(rows: pd.DataFrame) -> Partials:
    """Aggregate stored span rows (columns ROW_COLUMNS of ``spans``) by the grain."""
    return aggregate_with_inputs(rows)[0]


def aggregate_with_inputs(rows: pd.DataFrame) -> tuple[Partials, npt.NDArray[np.int64], SketchInputs]:
    """The partials of ``rows``, each row's group id in them, and the sketches' inputs: what a
    writer of other sketch encodings (the rollups' ClickHouse states) needs besides the partials."""
    dimensions = {name: _Labels(rows[name]) for name in DIMENSIONS}
    minutes = minute_of(epoch_ms(rows["start_time"]))
    first_minute = int(minutes.min()) if len(minutes) else 0
    grain = (minutes - first_minute) // 60
    for labels in dimensions.values():
        width = max(len(labels.uniques), 1)
        if len(grain) and int(grain.max()) >= (1 << 62) // width:  # renumber densely before it could overflow
            grain = np.unique(grain, return_inverse=True)[1].astype(np.int64)
        grain = grain * width + labels.codes
    _distinct, first, codes = np.unique(grain, return_index=True, return_inverse=True)
    groups = pd.DataFrame({name: _objects(labels.uniques[labels.codes[first]]) for name, labels in dimensions.items()})
    groups["minute"] = minutes[first]
    count = len(groups)
    flags, context = span_flags(rows)
    counters = pd.DataFrame(
        {
            name: np.bincount(codes, weights=np.asarray(flags[name], dtype=np.float64), minlength=count)
            for name in (*COUNTS, *SUMS)
        }
    ).astype({name: np.int64 for name in COUNTS})
    maps = []
    for index, rule in enumerate(_MAP_RULES.values()):
        mask, labels, value = rule(context)
        if mask.any():
            width = max(len(labels.uniques), 1)
            keys, sums = _sum_by(codes[mask] * width + labels.codes[mask], None if value is None else value[mask])
            maps.append(
                pd.DataFrame(
                    {
                        "group": keys // width,
                        "map": np.int8(index),
                        "key": _objects(labels.uniques[keys % width]),
                        "value": sums.astype(np.float64),
                    }
                )
            )
    bins, stats = [], []
    inputs = _sketch_values(rows, context)
    for index, (mask, values) in enumerate(inputs.values()):
        if not mask.any():
            continue
        chosen, group = values[mask], codes[mask]
        sign, key = bucket_keys(chosen)
        low = int(key.min())
        span = int(key.max()) - low + 1
        keys, counts = _sum_by((group * 3 + sign + 1) * span + (key - low), None)
        bins.append(
            pd.DataFrame(
                {
                    "group": keys // (3 * span),
                    "sketch": np.int8(index),
                    "sign": (keys // span % 3 - 1).astype(np.int8),
                    "key": keys % span + low,
                    "count": counts.astype(np.int64),
                }
            )
        )
        present = np.unique(group)
        low_values, high_values = np.full(count, np.inf), np.full(count, -np.inf)
        np.minimum.at(low_values, group, chosen)
        np.maximum.at(high_values, group, chosen)
        stats.append(
            pd.DataFrame(
                {
                    "group": present,
                    "sketch": np.int8(index),
                    "sum": np.bincount(group, weights=chosen, minlength=count)[present],
                    "min": low_values[present],
                    "max": high_values[present],
                }
            )
        )
    partials = Partials(
        groups, counters, _frame(maps, MAP_COLUMNS), _frame(bins, BIN_COLUMNS), _frame(stats, STAT_COLUMNS)
    )
    return partials, codes.astype(np.int64), inputs


MAP_COLUMNS = ("group", "map", "key", "value")
BIN_COLUMNS = ("group", "sketch", "sign", "key", "count")
STAT_COLUMNS = ("group", "sketch", "sum", "min", "max")


def _frame(parts: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=_DTYPES[name]) for name in columns})
    return pd.concat(parts, ignore_index=True).loc[:, list(columns)]


_DTYPES = {
    "group": "int64",
    "map": "int8",
    "key": "object",
    "value": "float64",
    "sketch": "int8",
    "sign": "int8",
    "count": "int64",
    "sum": "float64",
    "min": "float64",
    "max": "float64",
}


def empty() -> Partials:
    """Partials of no spans."""
    groups = pd.DataFrame({name: pd.Series(dtype=object) for name in DIMENSIONS}).assign(
        minute=pd.Series(dtype="int64")
    )
    counters = pd.DataFrame(
        {name: pd.Series(dtype="int64") for name in COUNTS} | {name: pd.Series(dtype="float64") for name in SUMS}
    )
    return Partials(groups, counters, _frame([], MAP_COLUMNS), _frame([], BIN_COLUMNS), _frame([], STAT_COLUMNS))


def _key_codes(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(first row, inverse) of the distinct value combinations of the columns, in numpy."""
    combined = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(column)
        width = max(len(uniques), 1)
        if len(combined) and int(combined.max()) >= (1 << 62) // width:
            combined = np.unique(combined, return_inverse=True)[1].astype(np.int64)
        combined = combined * width + codes
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    return first, inverse


def _reduce(
    frame: pd.DataFrame, keys: list[str], sums: list[str], mins: tuple[str, ...] = (), maxs: tuple[str, ...] = ()
) -> pd.DataFrame:
    """``frame`` grouped by ``keys``: sums, minima and maxima per distinct key, columns as given."""
    first, inverse = _key_codes([frame[key].to_numpy() for key in keys])
    out = {key: pd.Series(frame[key].to_numpy()[first], dtype=frame[key].dtype) for key in keys}
    for name in sums:
        out[name] = np.bincount(inverse, weights=frame[name].to_numpy(dtype=np.float64), minlength=len(first))
    for name, initial, reducer in [(m, np.inf, np.minimum) for m in mins] + [(m, -np.inf, np.maximum) for m in maxs]:
        values = np.full(len(first), initial)
        reducer.at(values, inverse, frame[name].to_numpy(dtype=np.float64))
        out[name] = values
    return pd.DataFrame(out).loc[:, list(frame.columns)]


def combine(parts: list[Partials]) -> Partials:
    """Merge partials (of any minutes) into one, group by group: sums, map sums, bin sums, min/max."""
    parts = [part for part in parts if len(part.groups)]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return empty()
    return _merge(parts)


def restamp(partials: Partials, minute: int) -> Partials:
    """The partials moved to one ``minute`` (epoch seconds), groups that now share a key merged:
    spans that came after their own minute was closed count in the minute still open."""
    if not len(partials.groups):
        return partials
    moved = Partials(
        partials.groups.assign(minute=np.full(len(partials.groups), minute, dtype=np.int64)),
        partials.counters,
        partials.maps,
        partials.bins,
        partials.stats,
    )
    return _merge([moved])


def _merge(parts: list[Partials]) -> Partials:
    offsets = np.cumsum([0] + [len(part.groups) for part in parts[:-1]])
    groups = pd.concat([part.groups for part in parts], ignore_index=True)
    first, codes = _key_codes([groups[name].to_numpy() for name in GRAIN])
    merged_groups = groups.iloc[first].reset_index(drop=True)
    stacked = pd.concat([part.counters for part in parts], ignore_index=True)
    counters = pd.DataFrame(
        {
            name: np.bincount(codes, weights=stacked[name].to_numpy(dtype=np.float64), minlength=len(first))
            for name in stacked.columns
        }
    ).astype({name: np.int64 for name in COUNTS})

    def regrouped(frames: list[pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(
            [f.assign(group=codes[f["group"].to_numpy() + offset]) for f, offset in zip(frames, offsets, strict=False)],
            ignore_index=True,
        )

    maps = _reduce(regrouped([p.maps for p in parts]), ["group", "map", "key"], ["value"])
    bins = _reduce(regrouped([p.bins for p in parts]), ["group", "sketch", "sign", "key"], ["count"])
    stats = _reduce(regrouped([p.stats for p in parts]), ["group", "sketch"], ["sum"], ("min",), ("max",))
    return Partials(
        merged_groups,
        counters,
        maps.astype({"group": np.int64}),
        bins.astype({"group": np.int64, "sign": np.int8, "key": np.int64, "count": np.int64}),
        stats.astype({"group": np.int64}),
    )


def select(partials: Partials, minutes: np.ndarray) -> Partials:
    """The groups of the given minutes, renumbered from 0."""
    chosen = np.flatnonzero(np.isin(partials.groups["minute"].to_numpy(), minutes))
    renumber = np.full(len(partials.groups), -1, dtype=np.int64)
    renumber[chosen] = np.arange(len(chosen))

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        new = renumber[frame["group"].to_numpy()]
        return frame.loc[new >= 0].assign(group=new[new >= 0]).reset_index(drop=True)

    return Partials(
        partials.groups.iloc[chosen].reset_index(drop=True),
        partials.counters.iloc[chosen].reset_index(drop=True),
        keep(partials.maps),
        keep(partials.bins),
        keep(partials.stats),
    )
