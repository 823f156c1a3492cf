"""Canonical span schema, version 1.1 (docs/requirements.md §2).

One span is one step of an AI request. This model is the single definition of what a
valid span is: the HTTP receiver validates payloads with it, the SDK builds spans with it,
the worker validates Kafka messages with it, and ``span.schema.json`` is exported from it.

Token convention (OpenTelemetry GenAI): ``input_tokens`` already *includes*
``cache_read_tokens`` and ``cache_write_tokens``; ``output_tokens`` already includes
``reasoning_tokens``. Pricing them again as extra tokens is the double-count bug several
tools shipped, so the model rejects spans where the parts exceed the whole.

Schema 1.1 adds token *details* (:data:`TOKEN_DETAIL_FIELDS`), each a part of a 1.0 count whose
meaning is unchanged, for the token classes current price lists charge at their own rate (README
"Token classes" cites the price pages): cache writes by time-to-live (Anthropic's 1-hour writes
cost twice the base input rate, its 5-minute ones 1.25 times), and audio and image tokens in and
out (OpenAI's audio and image models, Gemini's audio input). A detail left out is 0, i.e. priced
as the count it is part of: cache writes without a split are 5-minute writes, the default TTL.
1.1 is additive, so ``schema_version`` stays 1 and every 1.0 span is a valid 1.1 span.

Derived fields (``duration_ms`` from start/end, ``end_time``, ``tpot_ms``) are not stored
here: they are computed once, column-wise, by :mod:`spanline.streams.derive`.

The schema admits only what storage can hold: every range below is the intersection of what
a span may mean, what the worker's pandas/Arrow columns hold (datetime64[ms]) and what the
ClickHouse columns of ``sql/migrations`` hold (the ``spans`` table and its rollups). A value
outside it is refused here, with a reason, rather than wrapped, clamped or turned into inf
by a later stage. Strings must be valid Unicode (no lone surrogates, which UTF-8 cannot
encode): the constrained strings below are checked by pydantic-core, which refuses them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, NotRequired, cast

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator, with_config
from typing_extensions import TypedDict

from spanline_sdk.schema import ErrorType as ErrorType  # one definition: the SDK's (the server depends on it)
from spanline_sdk.schema import SpanKind as SpanKind

SCHEMA_VERSION = 1
#: Revision of the schema's major version 1: 1.1 added :data:`TOKEN_DETAIL_FIELDS`.
SCHEMA_REVISION = "1.1"

#: Upper bound on any token count: one request beyond this is a client bug, not a span
#: (and far inside the UInt32 token columns).
MAX_TOKENS = 100_000_000
#: The token counts of a span: input (cache reads and writes included), output (reasoning included)
#: and those parts.
TOKEN_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
#: Schema 1.1's token details, each a part of a count above (README "Token classes"): the cache
#: writes by time-to-live, and the audio and image tokens of input (cached reads of them included)
#: and of output. Stored beside the counts, priced by their own rates; the rollups keep the counts.
TOKEN_DETAIL_FIELDS: tuple[str, ...] = (
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "cache_audio_read_tokens",
    "input_image_tokens",
    "cache_image_read_tokens",
    "output_audio_tokens",
    "output_image_tokens",
)
#: Upper bound on an index's document or chunk count (a UInt64 column; far beyond any real index).
MAX_INDEX_ITEMS = 10**15
#: Upper bound on a span's length (24 h): longer durations are clock or unit errors.
MAX_DURATION_MS = 86_400_000.0
#: Tolerance when both ``end_time`` and ``duration_ms`` are given.
DURATION_TOLERANCE_MS = 1.0
#: Earliest storable instant: the rollups' minute/hour buckets (DateTime) and the day buckets and
#: partitions (Date) start at the Unix epoch; ClickHouse maps earlier times onto wrong buckets.
STORABLE_FROM = datetime(1970, 1, 1, tzinfo=UTC)
#: First instant past the storable range. DateTime (rollup buckets, TTL expressions) ends at
#: 2106-02-07 06:28:15 and wraps to 1970 past it, so a time plus its TTL (a year for spans_hour,
#: raw_ttl_days for raw spans) must stay below that or the row expires at once: 2100 leaves six
#: years. DateTime64(3) (to 2299) and datetime64[ns] (to 2262) reach further.
STORABLE_UNTIL = datetime(2100, 1, 1, tzinfo=UTC)
#: Largest magnitude of a float with no natural bound (retry_after_s, scores, cost_usd_reported):
#: far beyond any real value, inside Float32 (retry_after_s and retrieval_scores are Float32
#: columns, which hold inf past 3.4e38), and it keeps the rollups' Float64 sums finite.
MAX_MAGNITUDE = 1e12


def _rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


STORABLE_RANGE = f"{_rfc3339(STORABLE_FROM)} … {_rfc3339(STORABLE_UNTIL)} (end excluded)"
_MILLISECOND = timedelta(milliseconds=1)
#: Length of the storable range in ms: a span's end, as an offset from STORABLE_FROM, stays below it.
_STORABLE_MS = (STORABLE_UNTIL - STORABLE_FROM) / _MILLISECOND
#: Local years whose every instant, at any UTC offset (< 24 h), is storable: comparing aware
#: datetimes costs more than the rest of a span's validation, so only the edge years pay for it.
_SAFE_YEARS = range(STORABLE_FROM.year + 2, STORABLE_UNTIL.year - 1)


class Status(StrEnum):
    OK = "ok"
    ERROR = "error"


class CacheLayer(StrEnum):
    EXACT = "exact"
    SEMANTIC = "semantic"
    PROMPT = "prompt"
    RETRIEVAL = "retrieval"


class RoutingReason(StrEnum):
    DEFAULT = "default"
    ESCALATION = "escalation"
    FALLBACK = "fallback"
    CIRCUIT_OPEN = "circuit_open"
    CANARY = "canary"
    SHADOW = "shadow"


def _storable_utc(name: str) -> AfterValidator:
    """Naive timestamps are taken as UTC; aware ones keep their offset (the worker converts whole
    columns to UTC at once, which is far cheaper than one astimezone per span). Refuses an
    instant outside [STORABLE_FROM, STORABLE_UNTIL), naming the field and the range."""

    def check(value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value.year not in _SAFE_YEARS and not STORABLE_FROM <= value < STORABLE_UNTIL:
            raise ValueError(f"{name} {_rfc3339(value)} is outside the storable range {STORABLE_RANGE}")
        return value

    return AfterValidator(check)


StartTime = Annotated[datetime, _storable_utc("start_time")]
EndTime = Annotated[datetime, _storable_utc("end_time")]
Id = Annotated[str, Field(min_length=1, max_length=128)]
Label = Annotated[str, Field(max_length=256)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Millis = Annotated[float, Field(ge=0, le=MAX_DURATION_MS, allow_inf_nan=False)]
Score = Annotated[float, Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, allow_inf_nan=False)]


class Span(BaseModel):
    """One step of an AI request, as every collector emits it."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_enum_values=True,
        str_strip_whitespace=True,
        json_schema_extra={
            "$id": "https://spanline.dev/schema/span/v1.json",
            "$comment": f"revision {SCHEMA_REVISION}",
        },
    )

    # identity
    schema_version: Literal[1] = Field(1, description="Schema version; only 1 exists.")
    span_id: Id = Field(description="Unique id of this span.")
    trace_id: Id = Field(description="Correlation id of the whole request; the Kafka key.")
    parent_span_id: Id | None = Field(None, description="Parent span; null for the root.")
    tenant_id: Label = Field("", description="Set by the collector from the API key; a payload value is overwritten.")
    service: Label = Field(description="Service that made the call.")
    feature: Label = Field("", description="Product feature the request served.")
    environment: Label = Field("production", description="Deployment environment.")
    # what
    kind: SpanKind = Field(description="What this step is.")
    name: Label = Field("", description="Operation name, e.g. 'chat' or the tool's name.")
    start_time: StartTime = Field(
        description=f"Start, RFC 3339; naive values are UTC. Storable range: {STORABLE_RANGE}."
    )
    end_time: EndTime | None = Field(None, description="End; or give duration_ms. Same range as start_time.")
    duration_ms: Millis | None = Field(None, description="Duration; or give end_time.")
    # outcome
    status: Status = Field(Status.OK, description="ok or error.")
    error_type: ErrorType | None = Field(None, description="Error class when status=error.")
    http_status: int | None = Field(None, ge=100, le=599, description="Provider HTTP status.")
    retry_after_s: Annotated[float, Field(ge=0, le=MAX_MAGNITUDE, allow_inf_nan=False)] | None = Field(
        None, description="Retry-After the provider sent."
    )
    attempt: int = Field(0, ge=0, le=1000, description="0 = first try, 1 = first retry, …")
    finish_reason: Label | None = Field(None, description="Provider finish/stop reason.")
    # model
    provider: Label | None = Field(None, description="e.g. openai, anthropic, google.")
    endpoint: Label | None = Field(None, description="Provider endpoint / deployment.")
    region: Label | None = Field(None, description="Provider region.")
    model_requested: Label | None = Field(None, description="Model name the caller asked for.")
    model_response: Label | None = Field(None, description="Versioned model name returned.")
    # tokens
    input_tokens: Tokens = Field(0, description="All input tokens, cached ones included.")
    output_tokens: Tokens = Field(0, description="All output tokens, reasoning included.")
    cache_read_tokens: Tokens = Field(0, description="Part of input_tokens read from cache.")
    cache_write_tokens: Tokens = Field(0, description="Part of input_tokens written to cache.")
    reasoning_tokens: Tokens = Field(0, description="Part of output_tokens spent reasoning.")
    cache_write_5m_tokens: Tokens = Field(
        0, description="Part of cache_write_tokens written with a 5-minute TTL (1.1); unsplit writes count as 5-minute."
    )
    cache_write_1h_tokens: Tokens = Field(
        0, description="Part of cache_write_tokens written with a 1-hour TTL (1.1), e.g. Anthropic's ephemeral_1h."
    )
    input_audio_tokens: Tokens = Field(
        0, description="Part of input_tokens that is audio, cached audio included (1.1)."
    )
    cache_audio_read_tokens: Tokens = Field(
        0, description="Part of input_audio_tokens and of cache_read_tokens: audio read from cache (1.1)."
    )
    input_image_tokens: Tokens = Field(
        0, description="Part of input_tokens that is images, cached ones included (1.1)."
    )
    cache_image_read_tokens: Tokens = Field(
        0, description="Part of input_image_tokens and of cache_read_tokens: images read from cache (1.1)."
    )
    output_audio_tokens: Tokens = Field(0, description="Part of output_tokens that is audio (1.1).")
    output_image_tokens: Tokens = Field(0, description="Part of output_tokens that is images (1.1).")
    context_window: Tokens | None = Field(None, description="Model context window, tokens.")
    context_truncated: bool = Field(False, description="Input was truncated to fit.")
    # latency
    ttft_ms: Millis | None = Field(None, description="Time to first token (streaming).")
    # cache
    cache_hit: bool | None = Field(None, description="For cache spans: was it a hit.")
    cache_layer: CacheLayer | None = Field(None, description="exact, semantic, prompt, retrieval.")
    cache_similarity: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = Field(
        None, description="Similarity of a semantic-cache hit."
    )
    # routing
    route: Label | None = Field(None, description="Router decision / route name.")
    model_tier: Label | None = Field(None, description="e.g. small, large.")
    routing_reason: RoutingReason | None = Field(None, description="Why this model was chosen.")
    fallback_from: Label | None = Field(None, description="Model this call fell back from.")
    # prompt
    prompt_id: Label | None = Field(None, description="Prompt template id.")
    prompt_version: Label | None = Field(None, description="Prompt template version.")
    prompt_hash: Label | None = Field(None, description="Hash of the rendered prompt.")
    # user
    user_id_hash: Label | None = Field(
        None, description="Salted hash of the user id; raw ids never leave the collector."
    )
    session_id: Label | None = Field(None, description="Conversation/session id.")
    # retrieval
    index_name: Label | None = Field(None, description="Vector index queried.")
    top_k: int | None = Field(None, ge=0, le=100_000, description="Documents requested.")
    retrieval_doc_ids: list[Label] = Field(
        default_factory=list, max_length=10_000, description="Ids of documents returned."
    )
    retrieval_scores: list[Score] = Field(
        default_factory=list, max_length=10_000, description="Scores, aligned with doc ids."
    )
    embedding_model: Label | None = Field(None, description="Model that embedded the query.")
    index_embedding_model: Label | None = Field(None, description="Model that built the index.")
    index_documents: Annotated[int, Field(ge=0, le=MAX_INDEX_ITEMS)] | None = Field(
        None, description="For index_build spans: documents in the index after the build."
    )
    index_chunks: Annotated[int, Field(ge=0, le=MAX_INDEX_ITEMS)] | None = Field(
        None, description="For index_build spans: chunks (embedded passages) in the index after the build."
    )
    # tool / eval
    tool_name: Label | None = Field(None, description="Tool called.")
    eval_name: Label | None = Field(None, description="Evaluation name, e.g. recall@5.")
    eval_score: Score | None = Field(None, description="Evaluation score.")
    eval_passed: bool | None = Field(None, description="Did the evaluation pass.")
    # extra
    attributes: dict[Label, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, max_length=256, description="Anything else, as strings."
    )
    cost_usd_reported: Annotated[float, Field(ge=0, le=MAX_MAGNITUDE, allow_inf_nan=False)] | None = Field(
        None, description="Cost the client computed; kept for comparison, never used."
    )
    content: Annotated[str, Field(max_length=65_536)] | None = Field(
        None, description="Captured prompt/completion; off by default, redacted when on."
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Span:
        message = cross_field_errors([self.__dict__])[0]
        if message is not None:
            raise ValueError(message)
        return self


def cross_field_errors(spans: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """The schema's cross-field rules over a batch of field-valid spans: per span, the first
    broken rule's message or None.

    The one definition of these rules: the model applies it to one span, batch validation
    (:func:`spanline.contract.validation.validate_items`) to whole lists at numpy speed.
    A span may omit fields; absent ones take the model's defaults.
    """
    count = len(spans)

    def column(name: str, default: float = 0.0) -> np.ndarray:
        return np.fromiter(
            (default if (value := span.get(name)) is None else value for span in spans), dtype=np.float64, count=count
        )

    has_end = np.fromiter((span.get("end_time") is not None for span in spans), dtype=bool, count=count)
    measured = np.fromiter(
        (
            (span["end_time"] - span["start_time"]).total_seconds() * 1000.0 if end else math.nan
            for span, end in zip(spans, has_end, strict=True)
        ),
        dtype=np.float64,
        count=count,
    )
    duration = column("duration_ms", math.nan)
    late_start_ms = np.fromiter(  # a derived end can leave the range only from the last safe year on
        (
            (span["start_time"] - STORABLE_FROM) / _MILLISECOND if span["start_time"].year >= _SAFE_YEARS.stop else 0.0
            for span in spans
        ),
        dtype=np.float64,
        count=count,
    )

    def derived_end(index: int) -> str:
        end = spans[index]["start_time"] + timedelta(milliseconds=float(duration[index]))
        return (
            f"start_time + duration_ms ({_rfc3339(end.astimezone(UTC))}) is outside the storable range {STORABLE_RANGE}"
        )

    rules = cross_field_rules(
        has_end=has_end,
        measured_ms=measured,
        duration_ms=duration,
        late_start_ms=late_start_ms,
        tokens={name: column(name) for name in (*TOKEN_FIELDS, *TOKEN_DETAIL_FIELDS)},
        scores=np.fromiter((len(span.get("retrieval_scores") or ()) for span in spans), dtype=np.int64, count=count),
        doc_ids=np.fromiter((len(span.get("retrieval_doc_ids") or ()) for span in spans), dtype=np.int64, count=count),
        error_while_ok=np.fromiter(
            (span.get("status", Status.OK) == Status.OK and span.get("error_type") is not None for span in spans),
            dtype=bool,
            count=count,
        ),
    )
    messages: list[str | None] = [None] * count
    for broken, message in reversed(rules):  # the first rule a span breaks is the one it reports
        for index in np.flatnonzero(broken).tolist():
            messages[index] = message if message is not DERIVED_END else derived_end(index)
    return messages


#: The rule whose message names the derived end time (worded per span by cross_field_errors).
DERIVED_END = "start_time + duration_ms is outside the storable range"


def cross_field_rules(
    *,
    has_end: np.ndarray,
    measured_ms: np.ndarray,
    duration_ms: np.ndarray,
    late_start_ms: np.ndarray,
    tokens: Mapping[str, np.ndarray],
    scores: np.ndarray,
    doc_ids: np.ndarray,
    error_while_ok: np.ndarray,
) -> tuple[tuple[np.ndarray, str], ...]:
    """The cross-field rules over columns, in the order they are reported: (broken, message).

    The one definition of the rules, for the model and batch validation (cross_field_errors, per
    span) and for the worker's fast path (spanline.contract.column_checks, per column).
    ``measured_ms`` is (end - start) in ms as ``timedelta.total_seconds() * 1000`` computes it,
    NaN without an end; ``duration_ms`` NaN when absent; ``late_start_ms`` the start in ms since
    STORABLE_FROM (0 is fine for starts more than a day before STORABLE_UNTIL).
    """
    with np.errstate(invalid="ignore"):
        return (
            (~has_end & np.isnan(duration_ms), "give end_time or duration_ms"),
            (~has_end & (late_start_ms + duration_ms >= _STORABLE_MS), DERIVED_END),
            (has_end & (measured_ms < 0), "end_time is before start_time"),
            (has_end & (measured_ms > MAX_DURATION_MS), "span is longer than 24 h"),
            (
                has_end & (np.abs(measured_ms - duration_ms) > DURATION_TOLERANCE_MS),
                "duration_ms disagrees with end_time - start_time",
            ),
            (
                tokens["cache_read_tokens"] + tokens["cache_write_tokens"] > tokens["input_tokens"],
                "cache_read_tokens + cache_write_tokens exceed input_tokens (they are part of it)",
            ),
            (
                tokens["reasoning_tokens"] > tokens["output_tokens"],
                "reasoning_tokens exceed output_tokens (they are part of it)",
            ),
            (
                tokens["cache_write_5m_tokens"] + tokens["cache_write_1h_tokens"] > tokens["cache_write_tokens"],
                "cache_write_5m_tokens + cache_write_1h_tokens exceed cache_write_tokens (they are part of it)",
            ),
            (
                tokens["cache_audio_read_tokens"]
                > np.minimum(tokens["input_audio_tokens"], tokens["cache_read_tokens"]),
                "cache_audio_read_tokens exceed input_audio_tokens or cache_read_tokens (they are part of both)",
            ),
            (
                tokens["cache_image_read_tokens"]
                > np.minimum(tokens["input_image_tokens"], tokens["cache_read_tokens"]),
                "cache_image_read_tokens exceed input_image_tokens or cache_read_tokens (they are part of both)",
            ),
            (
                tokens["cache_read_tokens"]
                + tokens["cache_write_tokens"]
                + tokens["input_audio_tokens"]
                - tokens["cache_audio_read_tokens"]
                + tokens["input_image_tokens"]
                - tokens["cache_image_read_tokens"]
                > tokens["input_tokens"],
                "cache reads + cache writes + uncached audio + uncached image tokens exceed input_tokens "
                "(they are parts of it)",
            ),
            (
                tokens["reasoning_tokens"] + tokens["output_audio_tokens"] + tokens["output_image_tokens"]
                > tokens["output_tokens"],
                "reasoning_tokens + output_audio_tokens + output_image_tokens exceed output_tokens (they are parts of it)",
            ),
            ((scores > 0) & (scores != doc_ids), "retrieval_scores must align with retrieval_doc_ids"),
            (error_while_ok, "error_type is set but status is ok"),
        )


def span_fields_dict() -> type:
    """The model's fields as a TypedDict with the same types, constraints and config, minus the
    model: pydantic validates a list of these ~3x faster than a list of Span objects (no
    instances, no defaults filled: absent fields stay absent). The cross-field rules are not
    part of it: apply :func:`cross_field_errors` to the result."""
    fields: dict[str, Any] = {}
    for name, info in Span.model_fields.items():
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[name] = annotation if info.is_required() else NotRequired[annotation]
    # The functional TypedDict form, with fields known only at run time (mypy reads literal ones only).
    make_typed_dict = cast("Callable[[str, dict[str, Any]], type]", TypedDict)
    typed = make_typed_dict("SpanFieldsDict", fields)
    model = Span.model_config
    config = ConfigDict(
        extra=model["extra"],
        str_strip_whitespace=model["str_strip_whitespace"],
        use_enum_values=model["use_enum_values"],
    )
    return with_config(config)(typed)  # sets __pydantic_config__
