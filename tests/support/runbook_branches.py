"""Every diagnosis branch a rule's page can carry, per runbook (alerts/diagnosis.py's handlers;
the pipeline rules' generic branch is their metric). Routing reasons and cache layers are open
sets: these are the ones the simulator and the runbooks know."""

DIAGNOSIS_BRANCHES: dict[str, list[str]] = {
    "latency-spike": ["throughput", "long_inputs", "provider_endpoint"],
    "provider-outage": ["provider_errors", "client_errors"],
    "rate-limits": ["traffic_surge", "retry_storm", "provider_quota"],
    "cost-spike": [
        "traffic_volume",
        "output_length",
        "cache_hit_rate",
        "routing_mix",
        "routing_escalation",
        "routing_fallback",
        "routing_canary",
    ],
    "cache-collapse": ["exact_layer", "semantic_layer", "prompt_layer"],
    "tool-storm": ["single_tool", "all_tools"],
    "hallucination-spike": ["retrieval_regression", "prompt_change", "model_change", "no_change_found"],
    "index-corruption": ["embedding_mismatch", "empty_retrievals", "recall_drop"],
    "context-budget": ["context_errors", "truncation"],
    "silent-regression": ["new_model_version"],
    "pipeline-health": ["consumer_lag_s", "dlq_rate", "silent_partitions"],
    "stage-budget": ["more_calls_per_request", "stage_dominates", "everything_slower"],
    "rate-limit-headroom": ["traffic_surge", "longer_calls", "retry_storm", "steady_growth"],
    "index-health": ["documents_dropped", "chunking_changed", "no_reference"],
    "user-outcomes": ["failing_requests", "answer_quality", "no_signal_found"],
}
