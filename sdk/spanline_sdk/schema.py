"""The few schema facts the SDK needs, kept here so that it does not need the server.

The canonical span schema is the server's pydantic model (``spanline.contract.schema`` in the
Spanline repository); ``tests/test_sdk_schema.py`` there checks that every name and limit
below agrees with it, so a change to one side without the other fails CI.
"""

from __future__ import annotations

from enum import StrEnum

SCHEMA_VERSION = 1

#: Longest attribute value the schema accepts; longer values are cut by the SDK.
MAX_ATTRIBUTE_CHARS = 4096
#: Longest captured content the schema accepts.
MAX_CONTENT_CHARS = 65_536

#: Fields the SDK fills in itself (identity, timing, stamping); callers set the others.
SDK_FIELDS: tuple[str, ...] = (
    "schema_version",
    "span_id",
    "trace_id",
    "parent_span_id",
    "tenant_id",
    "service",
    "environment",
    "kind",
    "start_time",
    "duration_ms",
    "user_id_hash",
)


class SpanKind(StrEnum):
    LLM = "llm"
    EMBEDDING = "embedding"
    RETRIEVAL = "retrieval"
    RERANK = "rerank"
    TOOL = "tool"
    CACHE = "cache"
    AGENT_STEP = "agent_step"
    EVAL = "eval"
    REQUEST = "request"
    #: A build or refresh of a retrieval index (``index_name``, ``index_documents``, ``index_chunks``).
    INDEX_BUILD = "index_build"
    #: End-user feedback on the trace's answer, like a Langfuse score: ``eval_name`` (e.g. "thumbs"),
    #: ``eval_score`` (1/0 or a rating) and ``eval_passed`` (positive or not).
    FEEDBACK = "feedback"
    #: The request was handed to a human (``name`` = the reason): it was not contained.
    ESCALATION = "escalation"


class ErrorType(StrEnum):
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    CONTENT_FILTER = "content_filter"
    REFUSAL = "refusal"
    INVALID_OUTPUT = "invalid_output"
    TOOL_ERROR = "tool_error"
    CANCELLED = "cancelled"
    OTHER = "other"
