"""Configuration: one frozen settings object read from ``SPANLINE_*`` environment variables.

Every field documents its default. Unset ``clickhouse_url`` / ``kafka_bootstrap_servers``
mean the embedded default (chDB on disk, a bundled tansu broker started as a child process).
Unknown ``SPANLINE_*`` variables are rejected so a typo never silently falls back to a default;
the SDK's own ``SPANLINE_SDK_*`` variables are left to it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from spanline.errors import ConfigError
from spanline_sdk.config import ENV_PREFIX as SDK_ENV_PREFIX

ENV_PREFIX = "SPANLINE_"


class Settings(BaseSettings):
    """All of Spanline's knobs. Read once per process with :func:`load_settings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    home: Path = Field(
        Path.home() / ".spanline",
        description="State directory: chDB data, API-key file, running-service file. Default ~/.spanline.",
    )
    log_level: str = Field("INFO", description="Log level of every process. Default INFO.")
    # --- ClickHouse
    clickhouse_url: str | None = Field(
        None, description="ClickHouse DSN, e.g. http://user:pass@host:8123. Default: unset = chDB at <home>/clickhouse."
    )
    clickhouse_database: str = Field("spanline", description="Database holding every table. Default spanline.")
    clickhouse_password: SecretStr | None = Field(
        None, description="Password for a server DSN, kept out of the URL. Default: none."
    )
    raw_ttl_days: int = Field(30, ge=1, description="Days raw spans are kept (TTL). Default 30.")
    # --- Kafka
    kafka_bootstrap_servers: str | None = Field(
        None, description="host:port[,host:port]. Default: unset = embedded tansu broker on embedded_kafka_port."
    )
    embedded_kafka_port: int = Field(19092, description="Port of the embedded tansu broker. Default 19092.")
    topic_spans: str = Field("spans", description="Topic of span batches. Default spans.")
    topic_dlq: str = Field("spans.dlq", description="Dead-letter topic for invalid spans. Default spans.dlq.")
    topic_alerts: str = Field("alerts", description="Topic of alert events. Default alerts.")
    topic_metrics: str = Field(
        "metrics", description="Topic of closed per-minute windows (one partition, created on start). Default metrics."
    )
    topic_partitions: int = Field(4, ge=1, description="Partitions of created topics. Default 4.")
    topic_replication: int = Field(1, ge=1, description="Replication factor of created topics. Default 1.")
    # --- collector
    collector_host: str = Field("127.0.0.1", description="Receiver bind address. Default 127.0.0.1.")
    collector_port: int = Field(4318, description="Receiver port (OTLP/HTTP's standard port). Default 4318.")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest request body; 413 above. Default 8 MiB.")
    api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Tenant -> API key, as JSON: {"acme": "sk-..."}. Default: none (keys come from api_keys_file).',
    )
    api_keys_file: Path | None = Field(
        None, description="JSON file of tenant -> API key. Default: <home>/api_keys.json when it exists."
    )
    user_id_salt: SecretStr | None = Field(
        None, description="Master secret for per-tenant user-id salts. Default: generated once into <home>/salt."
    )
    spans_per_message: int = Field(500, ge=1, le=10_000, description="Spans per Kafka message. Default 500.")
    # --- worker
    consumer_group: str = Field(
        "spanline-worker", description="Kafka consumer group of workers. Default spanline-worker."
    )
    worker_web_port: int = Field(
        6066,
        description="Faust web port of the worker: /metrics, and the CLI's query service when embedded. Default 6066.",
    )
    worker_web_host: str = Field(
        "127.0.0.1",
        description="Bind address of the worker's web port (0.0.0.0 lets a Prometheus on another host scrape "
        "/metrics; the embedded query service there needs its token). Default 127.0.0.1.",
    )
    batch_max_messages: int = Field(200, ge=1, description="Kafka messages per processing batch. Default 200.")
    batch_within_s: float = Field(0.5, gt=0, description="Longest wait to fill a batch, seconds. Default 0.5.")
    fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        description="Longest a worker's Kafka fetch waits on the broker for data, ms (Faust's own is 1500; "
        "lower = fresher data, more idle fetches). Default 100.",
    )
    broker_session_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Consumer-group session timeout, seconds (Apache Kafka's minimum is 6). The embedded "
        "tansu broker always uses 2, since tansu makes joins wait about half of it. Default 10.",
    )
    window_lateness_s: float = Field(
        120.0,
        ge=0,
        description="Allowed lateness of the stream's minute windows: a window closes at the latest once "
        "spans this much newer have arrived; later spans are stored and counted in the minute still open. "
        "Default 120.",
    )
    window_grace_s: float = Field(
        10.0,
        ge=0,
        description="A window closes early, and its minute is evaluated, once a trace root (a span "
        "without parent) this much newer than the minute's end has arrived: spans of traces still "
        "running then count in the next open minute. Default 10.",
    )
    window_idle_s: float = Field(
        30.0,
        gt=0,
        description="Wall-clock seconds without messages after which a partition's event time advances "
        "on its own, so its windows still close. Default 30.",
    )
    retry_initial_s: float = Field(0.5, gt=0, description="First back-off when ClickHouse fails, seconds. Default 0.5.")
    retry_max_s: float = Field(30.0, gt=0, description="Longest back-off when ClickHouse fails, seconds. Default 30.")
    dedup_window_s: float = Field(
        3600.0,
        ge=0,
        description="A span re-sent (same tenant, trace_id and span_id) within this many seconds of Kafka "
        "message time is stored once; 0 turns re-send detection off. Default 3600.",
    )
    drain_timeout_s: float = Field(
        60.0,
        ge=0,
        description="On SIGINT/SIGTERM, `spanline up` stops accepting spans and waits at most this long, seconds, "
        "until the worker has stored every span accepted (a second signal stops at once; 0 = no wait). Default 60.",
    )
    price_overrides_file: Path | None = Field(
        None, description="YAML of negotiated / self-hosted prices. Default: none."
    )
    model_deployments_file: Path | None = Field(
        None,
        description="YAML mapping deployment names to model names per provider (Azure deployments, Bedrock "
        "inference profiles), so their spans are priced: {azure: {prod-chat: gpt-4o-2024-08-06}}. Default: none.",
    )
    # --- alerts
    alert_rules_file: Path | None = Field(None, description="Alert rules YAML. Default: the bundled alerts/rules.yaml.")
    alert_contracts_file: Path | None = Field(
        None, description="Budgets and feature contracts YAML. Default: the bundled spanline/contracts.yaml."
    )
    alert_pagerduty_routing_key: SecretStr | None = Field(
        None,
        description="PagerDuty Events API v2 integration (routing) key; pages go to PagerDuty when set. Default: none.",
    )
    alert_pagerduty_url: str = Field(
        "https://events.pagerduty.com/v2/enqueue", description="PagerDuty Events API v2 endpoint. Default: PagerDuty's."
    )
    alert_slack_webhook_url: SecretStr | None = Field(
        None, description="Slack incoming-webhook URL (a secret: it carries the token). Default: none."
    )
    alert_webhook_url: SecretStr | None = Field(
        None, description="Generic JSON webhook receiving every notification. Default: none."
    )
    runbook_base_url: str | None = Field(
        None,
        description=(
            "Where pages link to the runbooks: <base>/<runbook>#<branch>. Default: the receiver's own /runbooks, "
            "http://<collector host>:<collector port>/runbooks (the machine's name for a wildcard bind address)."
        ),
    )
    grafana_url: str = Field(
        "http://localhost:3000",
        description="Grafana base URL for the trace links of pages and `spanline trace`. Default http://localhost:3000.",
    )
    alert_group_wait_s: float = Field(
        5.0, ge=0, description="Seconds a new alert group waits to collect members before its first page. Default 5."
    )
    alert_repeat_interval_s: float = Field(
        4 * 3600.0, gt=0, description="Seconds between reminders of a still-firing alert group. Default 14400 (4 h)."
    )
    alert_rate_per_minute: float = Field(
        20.0, gt=0, description="Notifications per minute each receiver is sent at most. Default 20."
    )

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _check_urls(self) -> Settings:
        url = self.clickhouse_url
        if url is not None and not url.startswith(("chdb://", "http://", "https://")):
            raise ValueError("clickhouse_url must start with chdb://, http:// or https://")
        return self

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def embedded_clickhouse(self) -> bool:
        return self.resolved_clickhouse_url.startswith("chdb://")

    @property
    def resolved_clickhouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{self.home / 'clickhouse'}"

    @property
    def resolved_runbook_base_url(self) -> str:
        """``runbook_base_url``, else the receiver's ``/runbooks`` as its host and port say."""
        if self.runbook_base_url:
            return self.runbook_base_url.rstrip("/")
        host = self.collector_host
        if host in ("", "0.0.0.0", "::"):  # bound to every interface: name the machine
            host = socket.getfqdn()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.collector_port}/runbooks"

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.embedded_kafka_port}"


def _unknown_env_names(environ: dict[str, str]) -> list[str]:
    """``SPANLINE_*`` names that are no setting; the SDK's own (``SPANLINE_SDK_*``) are not ours to judge."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(
        n
        for n in environ
        if n.upper().startswith(ENV_PREFIX) and not n.upper().startswith(SDK_ENV_PREFIX) and n.upper() not in known
    )


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from the environment, rejecting unknown ``SPANLINE_*`` names."""
    env = dict(os.environ if environ is None else environ)
    unknown = _unknown_env_names(env)
    if unknown:
        known = ", ".join(ENV_PREFIX + n.upper() for n in Settings.model_fields)
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known settings: {known}")
    if environ is None:
        return Settings(**overrides)
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings(**overrides)
    finally:
        os.environ.clear()
        os.environ.update(saved)
