"""The non-LLM steps of a request: cache lookups, query embedding, retrieval, rerank, tools, evals.

Every stage takes the rows of the requests that reach it (``req``), their start times and
parent span ids as arrays, adds one span per row and returns when each row finished.
Start times are whole milliseconds, so a child never starts before its parent on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from spanline.simulator.workload_catalog import (
    AGENT_EXTRA_STEPS_MEAN,
    CANARY_DOC_RECALL,
    CANARY_K,
    CANARY_PASS_SCORE,
    DOCS_PER_INDEX,
    EMBEDDING_MODEL,
    EMBEDDING_PROVIDER,
    EVAL_NAMES,
    EVAL_PASS_SCORE,
    JUDGE_MODEL,
    RERANKER,
    SEMANTIC_THRESHOLD,
    TOOL_ERROR,
    TOOLS,
)
from spanline.simulator.workload_incident import IncidentRows
from spanline.simulator.workload_spans import Column, SpanSink

#: Strides coprime with DOCS_PER_INDEX: base + j·stride gives distinct docs for j < top_k.
_DOC_STRIDES = np.array([7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47])


@dataclass
class Stage:
    """What every stage needs: the block's random generator, span sink and incident rows."""

    rng: np.random.Generator
    sink: SpanSink
    incident: IncidentRows

    def knob(self, req: np.ndarray, baseline: float | np.ndarray, incident: float | None) -> float | np.ndarray:
        """A rate per row: the incident's value on affected rows, the baseline's elsewhere."""
        if incident is None or not self.incident.any:
            return baseline
        return np.where(self.incident.rows(req), incident, baseline)

    def slowed(self, kind: str, req: np.ndarray, duration: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``duration`` of ``kind`` steps, times the incident's factor on affected rows (one slow stage)."""
        slow = self.incident.effects.stage_latency
        if slow is None or slow[0] != kind or not self.incident.any:
            return duration
        return np.where(self.incident.rows(req), duration * slow[1], duration)

    def lognormal(self, median: float | np.ndarray, sigma: float, n: int) -> npt.NDArray[np.float64]:
        """Latencies and sizes: log-normal around ``median`` (heavy right tail, like real ones)."""
        return median * np.exp(sigma * self.rng.standard_normal(n))

    def gap(self, n: int) -> npt.NDArray[np.float64]:
        """Application overhead between two steps, 0.3–3 ms."""
        return self.rng.uniform(0.3, 3.0, n)


def start_at(cursor: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Span starts are whole milliseconds (the wire format's precision)."""
    return np.ceil(cursor)


def cache_lookup(
    st: Stage, req: np.ndarray, cursor: np.ndarray, parent: np.ndarray, layer: str, hit_rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (key-value) or semantic (vector) response-cache lookup; returns (end, hit)."""
    n = len(req)
    start = start_at(cursor)
    semantic = layer == "semantic"
    duration = st.slowed("cache", req, st.lognormal(12.0 if semantic else 1.5, 0.5, n))
    hit = st.rng.random(n) < st.knob(req, hit_rate, st.incident.effects.cache_hit.get(layer))
    fields: dict[str, Column] = {"name": f"cache.{layer}", "status": "ok", "cache_layer": layer, "cache_hit": hit}
    if semantic:
        similarity = np.round(st.rng.uniform(SEMANTIC_THRESHOLD, 1.0, n), 4).astype(object)
        similarity[~hit] = None
        fields["cache_similarity"] = similarity
    st.sink.add(req, "cache", start, duration, parent, **fields)
    return start + duration, hit


def embed_query(st: Stage, req: np.ndarray, cursor: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Embedding of the user's query; returns the end times."""
    n = len(req)
    start = start_at(cursor)
    duration = st.slowed("embedding", req, st.lognormal(45.0, 0.4, n))
    tokens = np.maximum(2, st.lognormal(24.0, 0.6, n)).astype(np.int64)
    model = query_embedding_model(st, req)
    st.sink.add(
        req,
        "embedding",
        start,
        duration,
        parent,
        name="embeddings",
        status="ok",
        provider=EMBEDDING_PROVIDER,
        model_requested=model,
        model_response=model,
        input_tokens=tokens,
        output_tokens=0,
    )
    return start + duration


def query_embedding_model(st: Stage, req: np.ndarray) -> str | np.ndarray:
    """The model queries are embedded with: the index's, unless an incident switched it."""
    switched = st.incident.effects.query_embedding_model
    if switched is None or not st.incident.any:
        return EMBEDDING_MODEL
    return np.where(st.incident.rows(req), switched, EMBEDDING_MODEL).astype(object)


@cache
def _doc_pool(suffix: str) -> np.ndarray:
    return np.array([f"{suffix}-{i:05d}" for i in range(DOCS_PER_INDEX)], dtype=object)


def _descending_scores(st: Stage, top: float, n: int, k: int) -> np.ndarray:
    """Similarity scores as a vector store returns them: best first, shrinking gaps."""
    first = np.clip(top + 0.05 * st.rng.standard_normal(n), 0.3, 0.99)
    steps = np.cumsum(st.rng.exponential(0.015, (n, k)), axis=1)
    steps -= steps[:, :1]
    return np.round(np.clip(first[:, None] - steps, 0.0, 1.0), 4)


def retrieve(
    st: Stage, req: np.ndarray, cursor: np.ndarray, parent: np.ndarray, index_name: np.ndarray, suffix: str, top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Vector search in the tenant's index; returns (end, retrieved doc indexes [n, top_k])."""
    n = len(req)
    start = start_at(cursor)
    duration = st.slowed("retrieval", req, st.lognormal(30.0 + 1.5 * top_k, 0.5, n))
    base = st.rng.integers(0, DOCS_PER_INDEX, n)
    stride = st.rng.choice(_DOC_STRIDES, n)
    docs = (base[:, None] + np.arange(top_k)[None, :] * stride[:, None]) % DOCS_PER_INDEX
    st.sink.add(
        req,
        "retrieval",
        start,
        duration,
        parent,
        name="retrieve",
        status="ok",
        index_name=index_name,
        top_k=top_k,
        retrieval_doc_ids=_doc_pool(suffix)[docs].tolist(),
        retrieval_scores=_descending_scores(st, 0.82, n, top_k).tolist(),
        embedding_model=query_embedding_model(st, req),
        index_embedding_model=EMBEDDING_MODEL,
    )
    return start + duration, docs


def rerank(
    st: Stage, req: np.ndarray, cursor: np.ndarray, parent: np.ndarray, docs: np.ndarray, suffix: str, top_n: int
) -> np.ndarray:
    """Cross-encoder rerank of the retrieved docs down to ``top_n``; returns the end times."""
    n = len(req)
    start = start_at(cursor)
    duration = st.slowed("rerank", req, st.lognormal(25.0 + 3.0 * docs.shape[1], 0.4, n))
    picked = np.argsort(st.rng.random(docs.shape), axis=1)[:, :top_n]
    chosen = np.take_along_axis(docs, picked, axis=1)
    st.sink.add(
        req,
        "rerank",
        start,
        duration,
        parent,
        name="rerank",
        status="ok",
        top_k=top_n,
        retrieval_doc_ids=_doc_pool(suffix)[chosen].tolist(),
        retrieval_scores=_descending_scores(st, 0.9, n, top_n).tolist(),
        attributes={"reranker": RERANKER},
    )
    return start + duration


def tool_call(st: Stage, req: np.ndarray, cursor: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """One agent tool call (search_web, sql_query, send_email), failing ``TOOL_ERROR`` of the time."""
    n = len(req)
    start = start_at(cursor)
    shares = np.array([share for _, share, _, _ in TOOLS])
    which = st.rng.choice(len(TOOLS), n, p=shares / shares.sum())
    median: npt.NDArray[np.float64] = np.array([m for _, _, m, _ in TOOLS])[which]
    sigma: npt.NDArray[np.float64] = np.array([s for _, _, _, s in TOOLS])[which]
    duration = st.slowed("tool", req, median * np.exp(sigma * st.rng.standard_normal(n)))
    failed = st.rng.random(n) < _tool_error_rate(st, req, which)
    names = np.array([name for name, _, _, _ in TOOLS], dtype=object)[which]
    for mask, status, error in ((~failed, "ok", None), (failed, "error", "tool_error")):
        st.sink.add(
            req[mask],
            "tool",
            start[mask],
            duration[mask],
            parent[mask],
            name=names[mask],
            tool_name=names[mask],
            status=status,
            error_type=error,
        )
    return start + duration


def _tool_error_rate(st: Stage, req: np.ndarray, which: np.ndarray) -> float | np.ndarray:
    """TOOL_ERROR, or the incident's rate for its failing tool on affected rows."""
    broken = st.incident.effects.tool_error
    if broken is None or not st.incident.any:
        return TOOL_ERROR
    tool = [name for name, _, _, _ in TOOLS].index(broken[0])
    return np.where(st.incident.rows(req) & (which == tool), broken[1], TOOL_ERROR)


def agent_extra_steps(st: Stage, req: np.ndarray) -> float | np.ndarray:
    """Mean extra agent steps per run (agents loop longer while their tools fail)."""
    return st.knob(req, AGENT_EXTRA_STEPS_MEAN, st.incident.effects.agent_extra_steps)


def judge_eval(st: Stage, req: np.ndarray, cursor: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Online LLM-judge eval of the answer (faithfulness or answer relevance); returns end times."""
    n = len(req)
    start = start_at(cursor)
    duration = st.lognormal(650.0, 0.4, n)
    names = np.array(EVAL_NAMES, dtype=object)[st.rng.integers(0, len(EVAL_NAMES), n)]
    score = np.round(st.rng.beta(8.0, 1.6, n), 4)
    degraded = st.incident.effects.faithfulness_beta
    if degraded is not None and st.incident.any:
        worse = st.incident.rows(req) & (names == "faithfulness")
        score[worse] = np.round(st.rng.beta(*degraded, int(worse.sum())), 4)
    st.sink.add(
        req,
        "eval",
        start,
        duration,
        parent,
        name=names,
        status="ok",
        eval_name=names,
        eval_score=score,
        eval_passed=score >= EVAL_PASS_SCORE,
        attributes={"judge_model": JUDGE_MODEL},
    )
    return start + duration


def canary_recall(
    st: Stage, req: np.ndarray, cursor: np.ndarray, parent: np.ndarray, index_name: np.ndarray
) -> np.ndarray:
    """Recall@k of a canary query on ``index_name`` whose relevant documents are known; returns end times."""
    n = len(req)
    start = start_at(cursor)
    duration = st.lognormal(2.0, 0.3, n)
    recall = st.rng.binomial(CANARY_K, st.knob(req, CANARY_DOC_RECALL, st.incident.effects.canary_recall), n) / CANARY_K
    name = f"recall@{CANARY_K}"
    st.sink.add(
        req,
        "eval",
        start,
        duration,
        parent,
        name=name,
        status="ok",
        eval_name=name,
        eval_score=recall,
        eval_passed=recall >= CANARY_PASS_SCORE,
        index_name=index_name,
    )
    return start + duration
