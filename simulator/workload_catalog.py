"""The simulated application's fixed facts: models, features, routes, tools and rates.

Kept apart from the generators so the numbers that shape the traffic (and that the tests
check bands against) can be read in one place. Model names are real catalogue names, so
the cost enrichment prices every call except the deliberately unknown self-hosted model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """One chat model as the workload calls it, with its latency and caching behaviour."""

    key: str
    provider: str
    model_requested: str
    model_response: str
    endpoint: str
    region: str | None
    context_window: int
    ttft_median_ms: float
    prefill_tokens_per_s: float
    tokens_per_s: float
    #: Prompt caching: "anthropic" (explicit reads and writes), "openai" (automatic reads) or "".
    caching: str
    #: Smallest prefix the provider caches, tokens.
    cache_min_tokens: int
    reasoning: bool
    #: finish_reason values for (natural stop, max tokens hit, tool call) in the provider's spelling.
    finish_reasons: tuple[str, str, str]


_OPENAI_FINISH = ("stop", "length", "tool_calls")
_ANTHROPIC_FINISH = ("end_turn", "max_tokens", "tool_use")
_GOOGLE_FINISH = ("STOP", "MAX_TOKENS", "STOP")

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "gpt-4o",
        "openai",
        "gpt-4o",
        "gpt-4o-2024-08-06",
        "https://api.openai.com/v1",
        None,
        128_000,
        450.0,
        25_000.0,
        85.0,
        "openai",
        1024,
        False,
        _OPENAI_FINISH,
    ),
    ModelSpec(
        "gpt-4o-mini",
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "https://api.openai.com/v1",
        None,
        128_000,
        320.0,
        40_000.0,
        115.0,
        "openai",
        1024,
        False,
        _OPENAI_FINISH,
    ),
    ModelSpec(
        "o3-mini",
        "openai",
        "o3-mini",
        "o3-mini-2025-01-31",
        "https://api.openai.com/v1",
        None,
        200_000,
        800.0,
        30_000.0,
        170.0,
        "openai",
        1024,
        True,
        _OPENAI_FINISH,
    ),
    ModelSpec(
        "claude-3-5-sonnet",
        "anthropic",
        "claude-3-5-sonnet",
        "claude-3-5-sonnet-20241022",
        "https://api.anthropic.com/v1",
        None,
        200_000,
        650.0,
        20_000.0,
        65.0,
        "anthropic",
        1024,
        False,
        _ANTHROPIC_FINISH,
    ),
    ModelSpec(
        "claude-3-5-haiku",
        "anthropic",
        "claude-3-5-haiku",
        "claude-3-5-haiku-20241022",
        "https://api.anthropic.com/v1",
        None,
        200_000,
        420.0,
        35_000.0,
        95.0,
        "anthropic",
        2048,
        False,
        _ANTHROPIC_FINISH,
    ),
    ModelSpec(
        "gemini-1.5-flash",
        "google",
        "gemini-1.5-flash",
        "gemini-1.5-flash-002",
        "https://generativelanguage.googleapis.com/v1beta",
        "us-central1",
        1_048_576,
        260.0,
        60_000.0,
        190.0,
        "",
        0,
        False,
        _GOOGLE_FINISH,
    ),
    ModelSpec(
        "llama-3.1-70b",
        "selfhosted",
        "llama-3.1-70b",
        "llama-3.1-70b",
        "http://vllm.internal:8000/v1",
        "eu-west-1",
        128_000,
        350.0,
        15_000.0,
        38.0,
        "",
        0,
        False,
        _OPENAI_FINISH,
    ),
)
MODEL_INDEX: dict[str, int] = {model.key: i for i, model in enumerate(MODELS)}

#: When every retry on a model fails, the last attempt goes to this model instead.
FALLBACK: dict[str, str] = {
    "gpt-4o": "claude-3-5-sonnet",
    "gpt-4o-mini": "claude-3-5-haiku",
    "o3-mini": "gpt-4o",
    "claude-3-5-sonnet": "gpt-4o",
    "claude-3-5-haiku": "gpt-4o-mini",
    "gemini-1.5-flash": "gpt-4o-mini",
    "llama-3.1-70b": "claude-3-5-haiku",
}

EMBEDDING_PROVIDER = "openai"
EMBEDDING_MODEL = "text-embedding-3-small"
RERANKER = "bge-reranker-v2-m3"
JUDGE_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Route:
    """One router outcome: requests of a feature go to ``model`` with this share."""

    name: str
    tier: str
    model: str
    reason: str
    share: float


@dataclass(frozen=True)
class FeatureSpec:
    """How one product feature behaves: its service, pipeline, prompt and token shape."""

    name: str
    service: str
    share: float
    root_name: str
    #: Pipeline: "rag" (cache, retrieval, answer), "summarise" (exact cache, one long call) or "agent".
    flow: str
    routes: tuple[Route, ...]
    prompt_id: str
    #: (version, share) pairs; the newer version is being rolled out.
    prompt_versions: tuple[tuple[str, float], ...]
    #: Fixed system-prompt (and tool schema) prefix: the part prompt caching can reuse.
    prefix_tokens: int
    input_median: float
    output_median: float
    max_output_tokens: int
    semantic_cache: bool
    index_suffix: str
    top_k: int
    rerank_share: float
    rerank_top_n: int
    eval_share: float


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "support-chat",
        "chat-api",
        0.45,
        "POST /v1/chat",
        "rag",
        (
            Route("support-chat:small", "small", "gpt-4o-mini", "default", 0.72),
            Route("support-chat:large", "large", "claude-3-5-sonnet", "escalation", 0.23),
            Route("support-chat:canary", "small", "claude-3-5-haiku", "canary", 0.05),
        ),
        "support-answer",
        (("v7", 0.9), ("v8", 0.1)),
        2400,
        1800.0,
        220.0,
        1024,
        True,
        "support-kb",
        8,
        0.4,
        4,
        0.06,
    ),
    FeatureSpec(
        "doc-search",
        "search-api",
        0.25,
        "POST /v1/search",
        "rag",
        (
            Route("doc-search:small", "small", "gemini-1.5-flash", "default", 0.85),
            Route("doc-search:large", "large", "gpt-4o", "escalation", 0.15),
        ),
        "search-synthesis",
        (("v3", 0.8), ("v4", 0.2)),
        2200,
        2500.0,
        150.0,
        512,
        True,
        "docs",
        20,
        1.0,
        5,
        0.05,
    ),
    FeatureSpec(
        "summarise",
        "chat-api",
        0.15,
        "POST /v1/summarise",
        "summarise",
        (
            Route("summarise:small", "small", "claude-3-5-haiku", "default", 0.55),
            Route("summarise:large", "large", "claude-3-5-sonnet", "escalation", 0.25),
            Route("summarise:selfhosted", "large", "llama-3.1-70b", "default", 0.20),
        ),
        "doc-summary",
        (("v12", 1.0),),
        1400,
        9000.0,
        450.0,
        2048,
        False,
        "",
        0,
        0.0,
        0,
        0.04,
    ),
    FeatureSpec(
        "code-agent",
        "agent-worker",
        0.15,
        "POST /v1/agent/run",
        "agent",
        (
            Route("code-agent:small", "small", "gpt-4o-mini", "default", 0.7),
            Route("code-agent:large", "large", "gpt-4o", "escalation", 0.3),
        ),
        "code-agent-system",
        (("v5", 0.85), ("v6", 0.15)),
        3200,
        1500.0,
        300.0,
        4096,
        False,
        "",
        0,
        0.0,
        0,
        0.0,
    ),
)

#: The code agent's first step plans with a reasoning model.
PLANNER_ROUTE = Route("code-agent:planner", "large", "o3-mini", "default", 1.0)

# --- rates -------------------------------------------------------------------------------
EXACT_HIT = 0.20
SEMANTIC_HIT = 0.17  # of exact misses: a RAG request is served from cache ≈ 34% of the time
SUMMARY_EXACT_HIT = 0.25
SEMANTIC_THRESHOLD = 0.92

#: First-attempt failure probabilities of an LLM call, by error type.
#: 429s stay near 0.5% of calls, so a 5-minute window of ~100 calls rarely reaches the 2% alert threshold.
FIRST_ATTEMPT_FAILURES: dict[str, float] = {"rate_limited": 0.004, "timeout": 0.0035, "server_error": 0.0055}
#: A retry right after a failure fails this often (failures cluster), the fallback attempt this often.
RETRY_FAILURE = 0.25
FALLBACK_FAILURE = 0.03
MAX_ATTEMPTS = 3
CLIENT_TIMEOUT_MS = 20_000.0
SERVER_ERROR_STATUSES = (500, 502, 503)

#: Documents larger than the model's window: half are truncated up front, half fail first.
#: Rare enough that context exhaustion (> 0.1% of a tenant's LLM calls) never pages on its own.
OVERSIZE_SHARE = 0.001
OUTPUT_RESERVE_TOKENS = 4096
LENGTH_FINISH_SHARE = 0.02

#: Anthropic: share of calls reading the cached prefix, and writing it (first call in a window).
ANTHROPIC_CACHE_READ = 0.70
ANTHROPIC_CACHE_WRITE = 0.15
OPENAI_CACHE_READ = 0.50

#: Agent: steps per run = 2 + Poisson(mean), capped.
AGENT_EXTRA_STEPS_MEAN = 1.5
AGENT_MAX_STEPS = 8
#: (tool, share, median latency ms, log-sigma)
TOOLS: tuple[tuple[str, float, float, float], ...] = (
    ("search_web", 0.5, 900.0, 0.6),
    ("sql_query", 0.35, 150.0, 0.8),
    ("send_email", 0.15, 350.0, 0.4),
)
TOOL_ERROR = 0.02

#: Online evals (LLM judge) on a sample of answered requests; threshold for ``eval_passed``.
EVAL_NAMES = ("faithfulness", "answer_relevance")
EVAL_PASS_SCORE = 0.7
#: Retrieval canaries: one per tenant and minute, checking recall@5 of known queries.
CANARY_PERIOD_S = 60
CANARY_K = 5
CANARY_DOC_RECALL = 0.93
CANARY_PASS_SCORE = 0.8

#: Diurnal curve: rate × (1 + amplitude · cos(2π (hour − peak) / 24)), times per-minute noise.
DIURNAL_PEAK_HOUR_UTC = 15.0
DIURNAL_AMPLITUDE = 0.6
MINUTE_NOISE_SIGMA = 0.1

USERS_PER_TENANT_SHARE = 4000
DOCS_PER_INDEX = 5000
