"""The ingest stage's Faust app: consumes ``spans``, runs the ingest pipeline and emits closed
minute windows to ``metrics`` (streams/windows). The worker process (spanline/worker.py) adds
the alerting stage and the query service to it.

Events are taken with ``noack_take`` and acked by the pipeline after storage, never by
Faust's ``take()`` finally-block (that acks on exceptions and cancellation), and the
consumer commits the pipeline's stored offsets (streams/commit.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.exceptions import ConsumerNotStarted
from faust.streams import Stream
from faust.types import TP, StreamT

from spanline.kafka.admin import topic_id
from spanline.kafka.publish import SpanPublisher, wait_acked
from spanline.metrics import WORKER_CONSUMER_LAG
from spanline.settings import Settings
from spanline.streams.commit import SpanlineApp, StoredOffsetConsumer, StoredOffsets
from spanline.streams.fetch_wait import limit_fetch_wait
from spanline.streams.pipeline import IngestPipeline
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import DeadLetter
from spanline.streams.recent_keys import RecentKeys
from spanline.streams.resends import RecentSpans
from spanline.streams.retry import transient
from spanline.streams.sinks import ClickHouseSpanSink
from spanline.streams.windows.changelog import Changelog
from spanline.streams.windows.manager import WindowManager

log = logging.getLogger(__name__)
#: Batches' worth of messages the consumer fetches ahead of the pipeline.
PREFETCH_BATCHES = 2


def faust_settings(settings: Settings) -> dict[str, Any]:
    """Faust/aiokafka knobs; short group timeouts because tansu joins take ~session/2 (docs/architecture.md)."""
    session = 2.0 if settings.embedded_kafka else settings.broker_session_timeout_s
    return {
        "broker": [f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        "store": "memory://",
        "datadir": str(settings.home / "faust"),
        "web_port": settings.worker_web_port,
        "web_bind": settings.worker_web_host,
        "web_host": "127.0.0.1",
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication,
        "topic_allow_declare": False,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": session,
        "broker_heartbeat_interval": min(3.0, session / 6),
        "broker_rebalance_timeout": max(session, 5.0),
        "broker_commit_interval": 1.0,
        "producer_acks": -1,
        "producer_compression_type": "lz4",
        "stream_wait_empty": False,
        # Faust's default prefetches 4,096 messages (of up to 500 spans each): 2.5 GB of RSS under a
        # backlog; two batches keep the pipeline as busy (bench/sustained.py, README).
        "stream_buffer_maxsize": PREFETCH_BATCHES * settings.batch_max_messages,
        "web_enabled": True,
    }


@dataclass(frozen=True)
class IngestApp:
    """The Faust app with its ingest agent, and what other stages may attach to it."""

    app: SpanlineApp
    pipeline: IngestPipeline
    sink: ClickHouseSpanSink
    storage: Callable[..., Awaitable[Any]]  # function(client, *args) on the sink's connection, retried


def create_ingest_app(settings: Settings) -> IngestApp:
    limit_fetch_wait(settings.fetch_max_wait_ms)
    app = SpanlineApp(settings.consumer_group, **faust_settings(settings))
    spans_topic = app.topic(settings.topic_spans, value_serializer="raw", key_serializer="raw", internal=False)
    dlq_topic = app.topic(settings.topic_dlq, value_serializer="raw", key_serializer="raw", internal=False)
    spans_topic_id = topic_id(settings.bootstrap_servers, settings.topic_spans)
    retry = transient(settings)
    sink = ClickHouseSpanSink(
        settings.resolved_clickhouse_url,
        settings.clickhouse_database,
        settings.topic_spans,
        spans_topic_id,
        settings.raw_ttl_days,
        retry,
        password=settings.clickhouse_password,
    )
    catalog = PriceCatalog.load(settings.price_overrides_file, deployments_file=settings.model_deployments_file)

    # force=True: inside an agent Faust would otherwise attach the message to the current event
    # and publish it only when that event is acked, but the batch is acked after these acks.
    async def send_dead_letters(letters: list[DeadLetter]) -> None:
        pending = [await dlq_topic.send(key=key, value=value, force=True) for key, value in letters]
        await asyncio.gather(*pending)

    # Windows go through their own kafka-python producer (sender thread, one request in flight so
    # retries keep minute order): through Faust's producer, acks on `metrics` stalled for seconds
    # while the worker consumed a backlog (bench/pipeline_throughput.py).
    window_producer = SpanPublisher(
        settings.bootstrap_servers,
        settings.topic_metrics,
        client_id="spanline-windows",
        max_in_flight_requests_per_connection=1,
        linger_ms=5,
    )

    async def publish_windows(messages: list[tuple[bytes, bytes]]) -> None:
        await retry.run(
            lambda: wait_acked(window_producer.send_records(settings.topic_metrics, messages)), "Kafka (windows)"
        )

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # faust types receivers without **kwargs
    async def close_window_producer(sender: faust.App, **_: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(None, window_producer.close)

    async def storage(function: Any, *args: Any) -> Any:
        return await sink.retrying(sink.call, function, *args)

    def caught_up(partition: int, next_offset: int) -> bool:
        """No backlog: the partition's next offset reached the high watermark of the last fetch."""
        highwater = app.consumer.highwater(TP(settings.topic_spans, partition))
        return highwater is not None and next_offset >= highwater

    windows = WindowManager(
        Changelog(settings.clickhouse_database, settings.topic_spans, spans_topic_id),
        storage,
        publish_windows,
        settings.window_lateness_s,
        settings.window_idle_s,
        caught_up=caught_up,
        grace_s=settings.window_grace_s,
    )
    recent_keys = RecentKeys(settings.clickhouse_database, settings.topic_spans)

    async def load_recent(partition: int, offset: int, recent: RecentSpans) -> None:
        await storage(recent_keys.load, partition, offset, recent)

    stored = StoredOffsets(settings.topic_spans)
    app.spanline_stored_offsets = stored
    pipeline = IngestPipeline(
        settings.topic_spans,
        sink,
        catalog,
        send_dead_letters,
        windows,
        stored=stored,
        resend_window_s=settings.dedup_window_s,
        load_recent=load_recent,
        retry=retry,
        batch_messages=settings.batch_max_messages,
        batch_wait_s=settings.batch_within_s,
    )

    @app.agent(spans_topic, concurrency=1)
    async def ingest(stream: StreamT[bytes]) -> None:
        # noack_take is on faust's Stream, the class every agent is handed; StreamT does not declare it
        async for events in cast(Stream[bytes], stream).noack_take(
            settings.batch_max_messages, within=settings.batch_within_s
        ):
            await pipeline.handle(events, stream.ack)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # faust's App.timer is not annotated
    async def advance_idle_windows() -> None:
        await pipeline.tick()

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # faust's App.timer is not annotated
    async def record_consumer_lag() -> None:
        await _record_consumer_lag(app, stored)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust types receivers without **kwargs
    async def on_revoked(sender: faust.App, revoked: set[Any], **_: Any) -> None:
        pipeline.forget({tp.partition for tp in revoked if tp.topic == settings.topic_spans})

    return IngestApp(app, pipeline, sink, storage)


async def _record_consumer_lag(app: SpanlineApp, stored: StoredOffsets) -> None:
    """Per assigned ``spans`` partition: high watermark of the last fetch minus the next offset not
    yet stored — the pipeline's own record once the partition's first batch arrived, before that
    the group's committed offset (or the log start, for a group that never committed), so the
    gauge counts what the commit still has to pass even while a batch is held."""
    try:
        consumer = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic == stored.topic]
    except ConsumerNotStarted:
        return
    lags: dict[int, int] = {}
    for tp in assigned:
        try:
            highwater = consumer.highwater(tp)
        except AssertionError:  # aiokafka asserts assignment: a rebalance (on its thread) revoked it since
            continue
        position = stored.next_offset(tp.partition)
        if position is None and isinstance(consumer, StoredOffsetConsumer):
            position = consumer.committed_offset(tp)
        if position is None:
            position = (await consumer.earliest_offsets(tp)).get(tp)
        if highwater is not None and position is not None:
            lags[tp.partition] = max(highwater - position, 0)
    WORKER_CONSUMER_LAG.clear()  # revoked partitions disappear from the scrape
    for partition, lag in lags.items():
        WORKER_CONSUMER_LAG.labels(stored.topic, str(partition)).set(lag)
