"""Independent pandas recomputation of the minute grain, for the window tests.

Written from the contract's definitions, not from spanline.streams.windows: the stream
windows, the ClickHouse rollups and this must all agree on the same spans.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spanline.contract.schema import TOKEN_FIELDS
from spanline.simulator.workload import WorkloadConfig, generate_traces
from spanline.windows import aggregate
from spanline.windows.merger import MinuteFigures

# The contract's names (what the columns are called); everything below computes them independently.
DIMENSIONS = list(aggregate.DIMENSIONS)
KEYS = [*DIMENSIONS, "minute"]
COUNTS = list(aggregate.COUNTS)
SUMS = list(aggregate.SUMS)
#: map -> (span mask column, key column, value column or None for a count)
MAPS = {
    "errors_by_type": ("errors", "error_type", None),
    "cache_lookups_by_layer": ("cache_known", "cache_layer", None),
    "cache_hits_by_layer": ("cache_hits", "cache_layer", None),
    "llm_calls_by_tier": ("llm_calls", "model_tier", None),
    "cost_by_tier": ("llm_calls", "model_tier", "cost_usd"),
    "llm_calls_by_reason": ("llm_calls", "routing_reason", None),
    "responses_by_model": ("has_response", "model_response", None),
    "tool_calls_by_tool": ("tool_calls", "tool_name", None),
    "tool_errors_by_tool": ("tool_errors", "tool_name", None),
    "cost_by_prompt": ("has_prompt", "prompt", "cost_usd"),
}
#: Maps only the stream windows carry (aggregate.ALERT_ONLY_MAPS: the rollups have no column for them).
ALERT_ONLY_MAPS = {
    "index_builds_by_index": ("index_builds", "index_name", None),
    "index_documents_by_index": ("index_builds", "index_name", "index_documents"),
    "index_chunks_by_index": ("index_builds", "index_name", "index_chunks"),
    "feedback_by_name": ("feedback", "eval_name", None),
    "positive_feedback_by_name": ("positive_feedback", "eval_name", None),
    "escalations_by_reason": ("escalations", "name", None),
    "recall_evals_by_index": ("recall_evals", "index_name", None),
    "recall_sum_by_index": ("recall_evals", "index_name", "recall_sum"),
    "retrievals_by_index": ("retrievals", "index_name", None),
    "first_attempts_by_slot": ("budgeted_first_attempts", "slot", None),
    "first_attempt_errors_by_slot": ("budgeted_first_attempt_errors", "slot", None),
    "first_attempt_rate_limited_by_slot": ("budgeted_first_attempt_rate_limited", "slot", None),
}
STREAM_MAPS = {**MAPS, **ALERT_ONLY_MAPS}
#: sketch -> (span mask column or None for all spans, value column)
SKETCHES = {
    "duration_ms": (None, "duration_ms"),
    "ttft_ms": ("has_ttft", "ttft_ms"),
    "tpot_ms": ("has_tpot", "tpot_ms"),
    "input_tokens": ("llm_calls", "input_tokens"),
}


def workload(config: WorkloadConfig) -> list[list[dict[str, object]]]:
    """The generator's chunks plus refusals, context overflows and truncations, embedding mismatches
    and failed faithfulness evals, which it rarely makes in a few minutes: every counter of the
    grain gets something to count."""
    chunks = [chunk for chunk in generate_traces(config) if chunk]
    llm = [span for chunk in chunks[::7] for span in chunk if span["kind"] == "llm"]
    for span in llm[::4]:
        span.update(status="error", error_type="refusal", output_tokens=0, reasoning_tokens=0)
    for span in llm[1::8]:
        span.update(
            status="error", error_type="context_length_exceeded", http_status=400, output_tokens=0, reasoning_tokens=0
        )
    for span in llm[2::8]:
        span["context_truncated"] = True
    retrievals = [span for chunk in chunks[::9] for span in chunk if span["kind"] == "retrieval"]
    for span in retrievals[::2]:
        span.update(embedding_model="text-embedding-3-small", index_embedding_model="text-embedding-3-large")
    faithfulness = [span for chunk in chunks for span in chunk if span.get("eval_name") == "faithfulness"]
    for span in faithfulness[::3]:
        span.update(eval_passed=False, eval_score=0.2)
    canaries = [span for chunk in chunks for span in chunk if str(span.get("eval_name", "")).startswith("recall@")]
    for number, span in enumerate(canaries[::2]):  # canaries that name the index they test (the rest: '')
        span["index_name"] = f"{span['tenant_id']}-{('docs', 'faq', 'code')[number % 3]}"
    return chunks


def flags(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per span: grain keys and every per-span contribution."""
    rows = rows.reset_index(drop=True)
    text = {
        name: rows[name].astype(object).where(rows[name].notna(), "").astype(str).astype(object)
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
            *DIMENSIONS,
        )
    }
    kind, status, error_type = text["kind"], text["status"], text["error_type"]
    cache_hit = rows["cache_hit"].astype("boolean")
    eval_passed = rows["eval_passed"].astype("boolean")
    cost = rows["cost_usd"].astype(float)
    retry = rows["attempt"].astype(int) > 0
    rate_limited = rows["http_status"].astype(int).eq(429) | error_type.eq("rate_limited")
    hallucination_eval = kind.eq("eval") & text["eval_name"].isin(["faithfulness", "hallucination", "groundedness"])
    recall = kind.eq("eval") & text["eval_name"].str.startswith("recall@")
    start = pd.to_datetime(rows["start_time"], utc=True)
    out = pd.DataFrame(
        {
            **{name: text[name] for name in DIMENSIONS},
            "minute": start.dt.floor("min"),
            "spans": 1,
            "requests": kind.eq("request"),
            "successful_requests": kind.eq("request") & status.eq("ok"),
            "errors": status.eq("error"),
            "rate_limited": rate_limited,
            "retries": retry,
            "first_attempt_errors": status.eq("error") & ~retry,
            "first_attempt_rate_limited": rate_limited & ~retry,
            "llm_calls": kind.eq("llm"),
            **{name: rows[name].astype("int64") for name in TOKEN_FIELDS},
            "unpriced": ~rows["cost_known"].astype(bool),
            "cache_lookups": kind.eq("cache"),
            "cache_hits": kind.eq("cache") & cache_hit.eq(True).fillna(False),
            "context_truncations": rows["context_truncated"].astype(bool),
            "context_length_errors": error_type.eq("context_length_exceeded"),
            "refusals": kind.eq("llm") & error_type.eq("refusal"),
            "tool_calls": kind.eq("tool"),
            "tool_errors": kind.eq("tool") & status.eq("error"),
            "evals": kind.eq("eval"),
            "evals_passed": kind.eq("eval") & eval_passed.eq(True).fillna(False),
            "hallucination_evals": hallucination_eval,
            "hallucinations": hallucination_eval & eval_passed.eq(False).fillna(False),
            "recall_evals": recall,
            "retrievals": kind.eq("retrieval"),
            "embedding_mismatches": text["embedding_model"].ne("")
            & text["index_embedding_model"].ne("")
            & text["embedding_model"].ne(text["index_embedding_model"]),
            "agent_steps": kind.eq("agent_step"),
            "cost_usd": cost,
            "retry_cost_usd": cost.where(retry, 0.0),
            "recall_sum": rows["eval_score"].astype(float).fillna(0.0).where(recall, 0.0),
            "cache_known": kind.eq("cache") & cache_hit.notna(),
            # 10-second slot of the minute, first attempts of LLM and tool calls (the burn-rate maps)
            "slot": ((start - start.dt.floor("min")).dt.total_seconds() // 10).astype(int).astype(str),
            "budgeted_first_attempts": (kind.eq("llm") | kind.eq("tool")) & ~retry,
            "budgeted_first_attempt_errors": (kind.eq("llm") | kind.eq("tool")) & ~retry & status.eq("error"),
            "budgeted_first_attempt_rate_limited": (kind.eq("llm") | kind.eq("tool")) & ~retry & rate_limited,
            "has_response": kind.eq("llm") & text["model_response"].ne(""),
            "has_prompt": text["prompt_id"].ne(""),
            "prompt": text["prompt_id"] + "@" + text["prompt_version"],
            **{
                name: text[name]
                for name in ("error_type", "cache_layer", "model_tier", "routing_reason", "model_response", "tool_name")
            },
            "duration_ms": rows["duration_ms"].astype(float),
            "ttft_ms": rows["ttft_ms"].astype(float),
            "tpot_ms": rows["tpot_ms"].astype(float),
            "has_ttft": rows["ttft_ms"].notna(),
            "has_tpot": rows["tpot_ms"].notna(),
            "index_builds": kind.eq("index_build"),
            "feedback": kind.eq("feedback"),
            "positive_feedback": kind.eq("feedback") & eval_passed.eq(True).fillna(False),
            "escalations": kind.eq("escalation"),
            "eval_name": text["eval_name"],
            "name": _text_or_blank(rows, "name"),
            "index_name": _text_or_blank(rows, "index_name"),
            **{
                name: pd.to_numeric(rows[name], errors="coerce")
                if name in rows
                else pd.Series(np.nan, index=rows.index)
                for name in ("index_documents", "index_chunks")
            },
        }
    )
    return out


def _text_or_blank(rows: pd.DataFrame, name: str) -> pd.Series:
    if name not in rows:
        return pd.Series("", index=rows.index, dtype=object)
    return rows[name].astype(object).where(rows[name].notna(), "").astype(str).astype(object)


def expected_counters(spans: pd.DataFrame) -> pd.DataFrame:
    """Counters and sums per grain group, indexed by KEYS (minute as aware UTC Timestamp)."""
    summed = spans.groupby(KEYS)[COUNTS + SUMS].sum()
    return keyed(summed.astype({name: "int64" for name in COUNTS}))


def expected_maps(spans: pd.DataFrame, maps: dict[str, tuple[str, str, str | None]] = MAPS) -> dict[str, pd.Series]:
    """map -> Series indexed by KEYS + map_key (``maps``: the rollups' by default, STREAM_MAPS for windows)."""
    out = {}
    for name, (mask, key, value) in maps.items():
        chosen = spans[spans[mask].astype(bool)]
        values = chosen[value].astype(float) if value else pd.Series(1.0, index=chosen.index)
        frame = chosen[KEYS].assign(map_key=chosen[key], value=values)
        out[name] = keyed(frame.groupby([*KEYS, "map_key"])["value"].sum().reset_index(), ("map_key",))["value"]
    return out


def sketch_values(spans: pd.DataFrame, name: str) -> pd.DataFrame:
    mask, column = SKETCHES[name]
    chosen = spans if mask is None else spans[spans[mask].astype(bool)]
    return chosen[[*KEYS, column]].rename(columns={column: "value"})


def within_sketch_error(estimate: float, values: np.ndarray, quantile: float, alpha: float = 0.01) -> bool:
    """DDSketch: the estimate is within alpha (relative) of a value at the quantile's rank."""
    low = np.quantile(values, quantile, method="lower")
    high = np.quantile(values, quantile, method="higher")
    return bool(low * (1 - alpha) - 1e-9 <= estimate <= high * (1 + alpha) + 1e-9)


def keyed(frame: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """A frame indexed by KEYS (+ extra) as plain objects and aware UTC minutes, sorted: comparable
    whether it came from pandas, the stream or ClickHouse."""
    frame = frame.reset_index() if frame.index.names != [None] else frame
    frame = frame.astype({name: object for name in (*DIMENSIONS, *extra)})
    minute = pd.to_datetime(frame["minute"])
    frame["minute"] = (minute.dt.tz_convert("UTC") if minute.dt.tz else minute.dt.tz_localize("UTC")).astype(
        "datetime64[ns, UTC]"
    )
    return frame.set_index([*KEYS, *extra]).sort_index()


def _figures_frame(figures: list[MinuteFigures]) -> pd.DataFrame:
    return keyed(pd.concat([figure.frame for figure in figures], ignore_index=True))


def assert_figures_equal_pandas(figures: list[MinuteFigures], rows: pd.DataFrame) -> None:
    """Counters and maps exactly (costs to 1e-9), p50/p95/p99 within the sketch's 1%."""
    spans = flags(rows)
    actual = _figures_frame(figures)
    expected = expected_counters(spans)
    assert actual.index.equals(expected.index)
    pd.testing.assert_frame_equal(actual[COUNTS], expected[COUNTS], check_dtype=False)
    pd.testing.assert_frame_equal(actual[SUMS], expected[SUMS], rtol=1e-9, atol=0.0)
    for name, series in expected_maps(spans, STREAM_MAPS).items():
        flat = {(*key, map_key): value for key, values in actual[name].items() for map_key, value in values.items()}
        got = pd.Series(flat, dtype=float).sort_index()
        assert got.index.tolist() == series.index.tolist(), name
        np.testing.assert_allclose(got.to_numpy(), series.to_numpy(), rtol=1e-9, err_msg=name)
    for name in SKETCHES:
        values = sketch_values(spans, name)
        sketches = actual[f"{name}_sketch"]
        assert sketches.notna().sum() == values.groupby(KEYS).ngroups, name
        for key, group in keyed(values).groupby(KEYS):
            sketch = sketches.loc[key]
            assert sketch.count == len(group)
            for quantile in (0.5, 0.95, 0.99):
                assert within_sketch_error(sketch.get_quantile_value(quantile), group["value"].to_numpy(), quantile), (
                    name,
                    key,
                    quantile,
                )
