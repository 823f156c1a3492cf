"""Chaos: Hypothesis-generated garbage from tenant "acme", valid traffic from "globex", a SIGKILLed
worker and re-sends, through the real receiver, broker, worker and chDB, on both brokers.

One run per broker (one stack: starting one costs seconds, so Hypothesis draws whole corpora
instead of one stack per example, see inputs.draw_examples):

1. about 140 Kafka messages produced straight to the spans topic (aiokafka: it can send null
   header values) and 85 HTTP bodies for /v1/spans and /v1/traces from acme (every generator
   branch of tests/chaos/inputs.py, ten or six times, and each heavy one once), interleaved with
   40 batches of valid globex spans through Kafka, JSON, NDJSON and OTLP, so good and bad share
   partitions and worker batches;
2. a third of the way in (while the worker is busy) the worker is SIGKILLed, a third is sent
   while it is down, then it is restarted and the rest is sent;
3. re-sends: canonical bodies, OTLP bodies and Kafka messages sent twice, within a phase, into
   the outage and across the kill. A re-sent Kafka message goes to its original's partition, as a
   producer's retry does: the worker's re-send filter is per partition (streams/resends.py, which
   relies on the key contract "message key = the spans' trace id"), so copies of a span that raw
   producers put in *different* partitions are reported as a note, not a failure;
4. a final globex canary batch (HTTP and Kafka) must be stored: the worker is alive and storing;
   then, once the consumer group has committed everything and the counts are stable, the
   invariants are checked and *all* broken ones are reported together, with examples:

   (i)   every valid span (tests/chaos/oracle.py) is in ``spans`` exactly once per
         (tenant_id, trace_id, span_id), and nothing else is;
   (ii)  spans_minute/hour/day hold the same span counts, tokens and cost per tenant as ``spans``;
   (iii) every undecodable Kafka message and invalid Kafka item has a dead letter keyed
         "<topic>/<partition>/<offset>[#<index>]" with a reason; every HTTP body got the status
         its content calls for (400 / 207 with each rejected index and its error / 200, OTLP's
         partialSuccess count) and each HTTP rejection has a dead letter too;
   (iv)  below the group's committed offset of each partition, every message of the spans topic
         (generated or the receiver's) is accounted for: its valid spans stored, the rest
         dead-lettered;
   (v)   the worker process never exited except for the deliberate SIGKILL, and its log shows no
         crashed agent or traceback from the ingest path.

CHAOS_SEED=<n> reproduces a run's inputs (printed in the summary). Spans older than the raw
retention (30 days: the year-1800 ones) may be dropped by the TTL at any moment, so for them
"at most once" is checked; rollups are compared over the retained window.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import os
import random
import re
import reprlib
import signal
import sysconfig
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status
from kafka import KafkaConsumer, TopicPartition
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.chaos import inputs
from tests.chaos.inputs import HttpInput, KafkaInput
from tests.chaos.oracle import SpanKey, ValidItem, Verdict, http_verdict, kafka_verdict
from tests.support.stack import TENANT_KEYS, Stack

pytestmark = pytest.mark.faults

SEED = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**31))
KAFKA_PER_KIND = 10  # adversarial Kafka messages of each light kind (13), plus one of each heavy kind (7)
HTTP_PER_KIND = 6  # adversarial HTTP bodies of each light kind (13), plus one of each heavy kind (5)
GLOBEX = {"kafka": 16, "http-json": 10, "http-ndjson": 6, "otlp-json": 8}  # batches of 1-25 valid spans
RESENDS = {"canonical": 4, "otlp": 4, "kafka": 6}
CANARY_SPANS = 10  # per door (HTTP and Kafka)
EXAMPLES = 4  # per kind of failure in the report

INVARIANTS = {
    "i": "(i) every valid span stored exactly once per (tenant_id, trace_id, span_id)",
    "ii": "(ii) rollups agree with raw spans per tenant",
    "iii": "(iii) every rejection reported: Kafka dead letters, HTTP status and errors",
    "iv": "(iv) no committed offset past an unaccounted message",
    "v": "(v) the worker never crashed",
}


# --- what was sent -------------------------------------------------------------------------


@dataclass
class Sent:
    number: int
    input: KafkaInput | HttpInput
    phase: str
    verdict: Verdict
    resend_of: int | None = None
    partition: int | None = None
    offset: int | None = None
    request_id: str | None = None
    status: int | None = None
    response: bytes = b""
    error: str | None = None

    @property
    def is_kafka(self) -> bool:
        return isinstance(self.input, KafkaInput)

    def where(self) -> str:
        again = f", re-send of #{self.resend_of}" if self.resend_of is not None else ""
        if isinstance(self.input, HttpInput):
            place = f"http {self.input.path} -> {self.status}"
        else:
            place = f"kafka p{self.partition}@{self.offset}" if self.offset is not None else "kafka (not produced)"
        return f"#{self.number} {place} [{self.input.tenant} {self.input.label}, {self.phase}{again}]"


@dataclass(frozen=True)
class Planned:
    item: KafkaInput | HttpInput
    plan_id: int
    copy_of: int | None = None  # plan_id of the original, for a re-send


def build_plan(seed: int) -> dict[str, list[Planned]]:
    """Corpora drawn by Hypothesis, shuffled together and cut into three phases, plus re-sends."""
    shuffle = random.Random(seed)
    acme: list[KafkaInput | HttpInput] = []
    acme += inputs.draw_each_kind(inputs.kafka_messages, inputs.KAFKA_VALUES, KAFKA_PER_KIND, seed)
    acme += inputs.draw_each_kind(inputs.http_bodies, inputs.HTTP_BODIES, HTTP_PER_KIND, seed + 1)
    acme += inputs.draw_each_kind(inputs.kafka_messages, inputs.HEAVY_KAFKA_VALUES, 1, seed + 2)
    acme += inputs.draw_each_kind(inputs.http_bodies, inputs.HEAVY_HTTP_BODIES, 1, seed + 3)
    globex: list[KafkaInput | HttpInput] = []
    for number, (door, count) in enumerate(GLOBEX.items()):
        globex += inputs.draw_examples(inputs.globex_inputs(door), count + 1, seed + 4 + number)[1:]
    everything = [Planned(item, plan_id) for plan_id, item in enumerate(acme + globex)]
    shuffle.shuffle(everything)
    third = len(everything) // 3
    phases = {
        "before-kill": everything[:third],
        "worker-down": everything[third : 2 * third],
        "after-restart": everything[2 * third :],
    }
    # Re-sends of inputs holding valid spans (acme's first): within a phase, into the outage, across the kill.
    names = list(phases)
    kinds: dict[str, Callable[[Any], bool]] = {
        "canonical": lambda x: isinstance(x, HttpInput) and x.path == "/v1/spans",
        "otlp": lambda x: isinstance(x, HttpInput) and x.path == "/v1/traces",
        "kafka": lambda x: isinstance(x, KafkaInput),
    }
    next_id = len(everything)
    for kind, wanted in RESENDS.items():
        candidates = [
            (name, planned)
            for name in names[:2]
            for planned in phases[name]
            if kinds[kind](planned.item) and _has_valid(planned.item)
        ]
        candidates.sort(key=lambda candidate: candidate[1].item.tenant != "acme")
        for number, (origin, planned) in enumerate(candidates[:wanted]):
            target = names[max(names.index(origin), number % 3)]
            slots = phases[target]
            low = slots.index(planned) + 1 if target == origin else 0
            slots.insert(shuffle.randint(low, len(slots)), Planned(planned.item, next_id, planned.plan_id))
            next_id += 1
    return phases


def _has_valid(item: KafkaInput | HttpInput) -> bool:
    return bool(_verdict(item).valid)


@functools.cache
def _verdict(item: KafkaInput | HttpInput) -> Verdict:
    if isinstance(item, KafkaInput):
        return kafka_verdict(item.value)
    return http_verdict(item.path, item.body, item.content_type, item.tenant)


def canary_inputs(run: str) -> list[KafkaInput | HttpInput]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    def span(door: str, number: int) -> dict[str, Any]:
        return {
            "span_id": f"canary-{run}-{door}-{number}",
            "trace_id": f"canary-{run}-{door}",
            "service": "chaos-canary",
            "kind": "llm",
            "start_time": inputs.iso(start + timedelta(milliseconds=number)),
            "duration_ms": 100.0,
            "provider": "openai",
            "model_requested": "gpt-4o-mini",
            "input_tokens": 10,
            "output_tokens": 2,
            "tenant_id": "globex",
        }

    kafka_spans = [span("kafka", n) for n in range(CANARY_SPANS)]
    http_spans = [span("http", n) for n in range(CANARY_SPANS)]
    return [
        KafkaInput(
            inputs.render(kafka_spans),
            kafka_spans[0]["trace_id"].encode(),
            ((inputs.SOURCE_HEADER, b"sdk"),),
            "canary",
            "globex",
        ),
        HttpInput("/v1/spans", inputs.render(http_spans), "application/json", "canary", "globex"),
    ]


# --- sending ---------------------------------------------------------------------------------


class RawProducer:
    """aiokafka on its own event-loop thread: kafka-python refuses null header values."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-producer", daemon=True)
        self._thread.start()
        self._producer: AIOKafkaProducer = self._call(self._start(bootstrap_servers))

    @staticmethod
    async def _start(bootstrap_servers: str) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            linger_ms=0,
            max_request_size=1_048_576,
            request_timeout_ms=30_000,
        )
        await producer.start()
        return producer

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=90)

    def send(self, topic: str, message: KafkaInput, partition: int | None = None) -> tuple[int, int]:
        metadata = self._call(
            self._producer.send_and_wait(
                topic, value=message.value, key=message.key, headers=list(message.headers), partition=partition
            )
        )
        return metadata.partition, metadata.offset

    def close(self) -> None:
        try:
            self._call(self._producer.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def post(url: str, body: HttpInput, request_id: str) -> tuple[int, bytes]:
    headers = {
        "Content-Type": body.content_type,
        "Authorization": f"Bearer {TENANT_KEYS[body.tenant]}",
        "X-Request-Id": request_id,
    }
    request = urllib.request.Request(f"{url}{body.path}", data=body.body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- reading what the pipeline did -----------------------------------------------------------


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    value: bytes | None


def read_records(bootstrap_servers: str, topic: str, quiet_s: float = 2.0, timeout_s: float = 90.0) -> list[Record]:
    """Every record of a topic: read past its end offsets until nothing came for ``quiet_s``
    (tansu's watermarks are approximate: its end offset can lag the last record)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        last_record = time.monotonic()
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=300, max_records=5_000)
            for tp, messages in polled.items():
                records += [Record(tp.partition, m.offset, m.value) for m in messages]
            if polled:
                last_record = time.monotonic()
            elif time.monotonic() - last_record > quiet_s and all(
                consumer.position(tp) >= ends[tp] for tp in partitions
            ):
                break
        return records
    finally:
        consumer.close()


def group_offsets(stack: Stack) -> tuple[dict[int, int], dict[int, int]]:
    """(committed, end) offsets of the spans topic per partition for the worker's consumer group."""
    consumer = KafkaConsumer(
        bootstrap_servers=stack.bootstrap_servers, group_id=stack.settings.consumer_group, enable_auto_commit=False
    )
    try:
        partitions = [TopicPartition(stack.settings.topic_spans, p) for p in range(stack.partitions)]
        ends = consumer.end_offsets(partitions)
        return (
            {tp.partition: consumer.committed(tp) or 0 for tp in partitions},
            {tp.partition: ends[tp] for tp in partitions},
        )
    finally:
        consumer.close()


# --- the run ---------------------------------------------------------------------------------


class Chaos:
    def __init__(self, stack: Stack, broker: str) -> None:
        self.stack = stack
        self.broker = broker
        self.run = uuid.uuid4().hex[:6]
        self.sent: list[Sent] = []
        self.send_number: dict[int, int] = {}  # plan_id -> Sent.number
        self.events: list[str] = []
        self.worker_exits: list[str] = []
        self.producer = RawProducer(stack.bootstrap_servers)
        self.started = time.monotonic()

    # sending
    def send(self, item: KafkaInput | HttpInput, phase: str, resend_of: int | None = None) -> Sent:
        """Produce or POST one input. A re-sent Kafka message goes to its original's partition, as a
        producer's retry does (a keyless message would otherwise land anywhere)."""
        sent = Sent(len(self.sent), item, phase, _verdict(item), resend_of)
        self.sent.append(sent)
        if isinstance(item, KafkaInput):
            partition = None if resend_of is None else self.sent[resend_of].partition
            try:
                sent.partition, sent.offset = self.producer.send(self.stack.settings.topic_spans, item, partition)
            except Exception as exc:
                sent.error = f"{type(exc).__name__}: {exc}"
        else:
            sent.request_id = f"chaos-{self.run}-{sent.number}"
            try:
                sent.status, sent.response = post(self.stack.collector_url, item, sent.request_id)
            except (OSError, http.client.HTTPException) as exc:
                sent.error = f"{type(exc).__name__}: {exc}"
        return sent

    def run_phase(self, name: str, planned: Iterable[Planned]) -> None:
        for entry in planned:
            sent = self.send(entry.item, name, None if entry.copy_of is None else self.send_number[entry.copy_of])
            self.send_number[entry.plan_id] = sent.number
            self.check_worker(f"while sending ({name})")

    # the worker
    def check_worker(self, when: str) -> None:
        worker = self.stack.worker
        if worker is not None and worker.poll() is not None:
            self.worker_exits.append(f"the worker exited with status {worker.returncode} {when}")
            self.stack.worker = None

    def kill_worker(self) -> None:
        self.check_worker("before the deliberate SIGKILL")
        try:
            committed, ends = group_offsets(self.stack)
            lag = f"{sum(ends[p] - committed[p] for p in ends)} messages uncommitted"
        except Exception as exc:
            lag = f"lag unknown: {exc}"
        self.log_mark("SIGKILL")
        self.stack.stop_worker(signal.SIGKILL)
        self.events.append(f"SIGKILL at {time.monotonic() - self.started:.1f}s with {lag}")

    def restart_worker(self) -> None:
        self.log_mark("restart")
        try:
            self.stack.start_worker()
        except AssertionError as exc:
            self.worker_exits.append(f"the restarted worker did not come up: {exc}")
            self.stack.start_worker(wait=False)
        self.events.append(f"restarted at {time.monotonic() - self.started:.1f}s")

    def log_mark(self, what: str) -> None:
        with open(self.stack.home / "worker.log", "a") as log:
            log.write(f"--- chaos: {what} at {datetime.now(UTC).isoformat()}\n")

    def count(self, sql: str) -> int:
        try:
            return int(self.stack.scalar(sql))
        except Exception:
            return -1

    def poll(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_worker("while waiting")
            if predicate():
                return True
            time.sleep(0.5)
        return False

    def settle(self, timeout_s: float) -> str:
        """Wait until the group committed every message and counts stopped moving; say how it ended."""
        last: tuple[Any, ...] | None = None
        stable = 0
        deadline = time.monotonic() + timeout_s
        committed: dict[int, int] = {}
        ends: dict[int, int] = {}
        while time.monotonic() < deadline:
            self.check_worker("while settling")
            try:
                committed, ends = group_offsets(self.stack)
            except Exception:
                time.sleep(1)
                continue
            for sent in self.sent:  # tansu's end offsets may lag what it acknowledged
                if sent.offset is not None:
                    ends[sent.partition] = max(ends[sent.partition], sent.offset + 1)  # type: ignore[index]
            snapshot = (tuple(sorted(committed.items())), self.count("SELECT count() FROM {db}.spans"))
            caught_up = all(committed[p] >= ends[p] for p in ends)
            stable = stable + 1 if snapshot == last and caught_up else 0
            if stable >= 2:
                return f"settled: committed = end offsets {ends}"
            last = snapshot
            time.sleep(1)
        return f"did NOT settle within {timeout_s:.0f}s: committed {committed}, end offsets {ends}"


# --- the test --------------------------------------------------------------------------------


@pytest.fixture
def stack(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    stack = Stack(kafka_broker.bootstrap_servers, tmp_path_factory.mktemp(f"chaos-{kafka_broker.name}"))
    stack.start_worker()
    stack.start_receiver()
    yield stack
    stack.close()


def test_chaos_garbage_kill_and_resends_keep_every_invariant(kafka_broker: Any, stack: Stack) -> None:
    plan = build_plan(SEED)
    chaos = Chaos(stack, kafka_broker.name)
    try:
        before = plan["before-kill"]
        chaos.run_phase("before-kill", before[: len(before) * 2 // 3])
        chaos.poll(lambda: chaos.count("SELECT count() FROM {db}.spans") > 0, 20)  # the worker is storing...
        chaos.run_phase("before-kill", before[len(before) * 2 // 3 :])  # ...and busy with these when killed
        chaos.kill_worker()
        chaos.run_phase("worker-down", plan["worker-down"])
        chaos.restart_worker()
        chaos.run_phase("after-restart", plan["after-restart"])
        for canary in canary_inputs(chaos.run):
            chaos.send(canary, "canary")
        canary_sql = "SELECT count() FROM {db}.spans WHERE tenant_id = 'globex' AND service = 'chaos-canary'"
        canary_stored = chaos.poll(lambda: chaos.count(canary_sql) >= 2 * CANARY_SPANS, 90)
        settled = chaos.settle(45 if canary_stored else 10)
    finally:
        chaos.producer.close()
    chaos.events.append(f"canary {'stored' if canary_stored else 'NOT stored after 90s'}; {settled}")
    if stack.worker is None or stack.worker.poll() is not None:  # still report what was stored
        chaos.check_worker("by the end of the run")
        stack.start_worker(wait=False)
        chaos.poll(lambda: chaos.count("SELECT 1") == 1, 60)

    report = Report(chaos)
    report.check_all()
    summary = report.summary()
    print(f"\n{summary}\n" + "\n".join(report.details()))
    if report.broken:
        pytest.fail(f"{summary}\n" + "\n".join(report.details()), pytrace=False)


# --- the invariants ----------------------------------------------------------------------------


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 6, 6, 80, 80, 40


def answer_body(item: HttpInput, status: int, response: bytes) -> dict[str, Any]:
    """The receiver's answer as a dict; OTLP protobuf answers decoded from their message types."""
    if item.path == "/v1/traces" and item.content_type == "application/x-protobuf":
        message = Status() if status >= 400 else ExportTraceServiceResponse()
        try:
            message.ParseFromString(response)
        except DecodeError:
            return {"unparseable": response[:200]}
        return json_format.MessageToDict(message)
    try:
        decoded = orjson.loads(response) if response else {}
    except orjson.JSONDecodeError:
        return {"unparseable": response[:200]}
    return decoded if isinstance(decoded, dict) else {"unexpected": decoded}


def preview(value: Any, limit: int = 160) -> str:
    """A short repr that survives 5,000 nested lists and 900 KB strings."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


class Report:
    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.stack = chaos.stack
        self.topic = self.stack.settings.topic_spans
        self.broken: dict[str, list[str]] = defaultdict(list)
        self.notes: list[str] = []
        self.retained_from = (datetime.now(UTC) - timedelta(days=self.stack.settings.raw_ttl_days - 2)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )

    def fail(self, invariant: str, what: str, examples: list[str], total: int | None = None) -> None:
        count = len(examples) if total is None else total
        lines = [f"{what}: {count:,}"] + [f"    e.g. {example}" for example in examples[:EXAMPLES]]
        self.broken[invariant].append("\n".join(lines))

    def check_all(self) -> None:
        stored: Counter[SpanKey] = Counter()
        letters: dict[str, list[dict[str, Any]]] = {}
        for invariant, check in (
            ("i", lambda: stored.update(self.stored_keys())),
            ("iii", lambda: letters.update(self.dead_letters())),
            ("i", lambda: self.check_exactly_once(stored)),
            ("ii", self.check_rollups),
            ("iii", lambda: self.check_rejections(letters)),
            ("iv", lambda: self.check_commits(stored, letters)),
            ("v", self.check_worker),
        ):
            try:
                check()
            except Exception as exc:
                self.fail(invariant, f"could not be checked ({type(exc).__name__}: {preview(str(exc), 300)})", [], 1)

    # observations
    def stored_keys(self) -> Counter[SpanKey]:
        rows = self.stack.query(
            "SELECT tenant_id, trace_id, span_id, count(), groupArray(kafka_partition) "
            "FROM {db}.spans GROUP BY tenant_id, trace_id, span_id"
        ).rows
        self.partitions_of = {SpanKey(str(t), str(tr), str(s)): sorted(parts) for t, tr, s, _, parts in rows}
        return Counter({SpanKey(str(t), str(tr), str(s)): int(n) for t, tr, s, n, _ in rows})

    def dead_letters(self) -> dict[str, list[dict[str, Any]]]:
        by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        unreadable = []
        for record in read_records(self.stack.bootstrap_servers, self.stack.settings.topic_dlq):
            try:
                letter = orjson.loads(record.value or b"")
                by_key[str(letter["dedup_key"])].append(letter)
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                unreadable.append(f"dlq@{record.offset}: {exc}: {preview(record.value)}")
        if unreadable:
            self.fail("iii", "dead letters that are not JSON with a dedup_key", unreadable)
        self.letter_count = sum(len(v) for v in by_key.values())
        return by_key

    # (i)
    def expected(self) -> tuple[dict[SpanKey, list[tuple[Sent, ValidItem]]], set[SpanKey]]:
        """Keys that must be stored (exactly once), and keys that may be (at most once): spans
        past the retention or of an HTTP body the receiver did not acknowledge."""
        must: dict[SpanKey, list[tuple[Sent, ValidItem]]] = defaultdict(list)
        may: set[SpanKey] = set()
        for sent in self.chaos.sent:
            acknowledged = (sent.offset is not None) if sent.is_kafka else sent.status in (200, 207)
            for item in sent.verdict.valid:
                if acknowledged and item.start_time >= self.retained_from:
                    must[item.key].append((sent, item))
                else:
                    may.add(item.key)
        return must, may - set(must)

    def check_exactly_once(self, stored: Counter[SpanKey]) -> None:
        must, may = self.expected()
        missing = [key for key in must if stored[key] == 0]
        twice = [key for key in list(must) + list(may) if stored[key] > 1]
        unexpected = [key for key in stored if key not in must and key not in may]

        def sources(key: SpanKey) -> str:
            senders = must.get(key, [])
            return "; ".join(sent.where() for sent, _ in senders[:3]) or "an expirable/unacknowledged input"

        # A span's copies in *different* partitions come from raw producers ignoring the key contract
        # (message key = the spans' trace id, spanline/kafka/publish.py): the worker's re-send filter is per
        # partition (streams/resends.py), so those are noted, not failed. Re-sends here keep the partition.
        across = [key for key in twice if len(set(self.partitions_of.get(key, []))) == stored[key]]
        twice = [key for key in twice if key not in across]
        resent = [key for key in twice if len({s.number for s, _ in must.get(key, [])}) > 1]
        self.fail_if("i", "valid spans never stored", missing, lambda k: f"{tuple(k)} from {sources(k)}")
        self.fail_if(
            "i",
            "valid spans sent more than once (re-sends, repeated ids) and stored more than once",
            resent,
            lambda k: f"{tuple(k)} stored {stored[k]}x (partitions {self.partitions_of.get(k)}), sent by {sources(k)}",
        )
        self.fail_if(
            "i",
            "valid spans sent once but stored more than once (redelivery)",
            [k for k in twice if k not in resent],
            lambda k: f"{tuple(k)} stored {stored[k]}x (partitions {self.partitions_of.get(k)}) from {sources(k)}",
        )
        if across:
            self.notes.append(
                f"{len(across)} span(s) stored once in each of several partitions, their copies produced "
                f"raw to different partitions, e.g. {tuple(across[0])} in partitions "
                f"{self.partitions_of.get(across[0])} from {sources(across[0])}"
            )
        self.fail_if(
            "i",
            "stored spans that are no valid span of any input",
            unexpected,
            lambda k: f"{tuple(k)} stored {stored[k]}x",
        )
        self.valid_keys, self.maybe_keys = len(must), len(may)

    def fail_if(self, invariant: str, what: str, keys: list[Any], describe: Callable[[Any], str]) -> None:
        if keys:
            self.fail(invariant, what, [describe(key) for key in keys[:EXAMPLES]], len(keys))

    # (ii)
    def check_rollups(self) -> None:
        since = self.retained_from.strftime("%Y-%m-%d %H:%M:%S")
        raw = self.stack.query(
            "SELECT tenant_id, count(), sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM {db}.spans "
            f"WHERE start_time >= toDateTime64('{since}', 3, 'UTC') GROUP BY tenant_id"
        ).rows
        expected = {str(row[0]): tuple(row[1:]) for row in raw}
        for table, column in (("spans_minute", "minute"), ("spans_hour", "hour"), ("spans_day", "day")):
            bound = f"toDate('{since[:10]}')" if column == "day" else f"toDateTime('{since}', 'UTC')"
            rolled = self.stack.query(
                "SELECT tenant_id, sum(spans), sum(input_tokens), sum(output_tokens), sum(cost_usd) "
                f"FROM {{db}}.{table} WHERE {column} >= {bound} GROUP BY tenant_id"
            ).rows
            got = {str(row[0]): tuple(row[1:]) for row in rolled}
            wrong = []
            for tenant in sorted(set(expected) | set(got)):
                want, have = expected.get(tenant, (0, 0, 0, 0.0)), got.get(tenant, (0, 0, 0, 0.0))
                same = [int(a or 0) == int(b or 0) for a, b in zip(want[:3], have[:3], strict=True)]
                same.append(float(want[3] or 0) == pytest.approx(float(have[3] or 0), rel=1e-9, abs=1e-9))
                if not all(same):
                    wrong.append(f"tenant {tenant!r}: raw (spans, input, output, cost) = {want}, {table} = {have}")
            if wrong:
                self.fail("ii", f"{table} disagrees with spans (rows since {since})", wrong)

    # (iii)
    def check_rejections(self, letters: dict[str, list[dict[str, Any]]]) -> None:
        missing, no_reason, http_wrong, http_no_letter = [], [], [], []
        for sent in self.chaos.sent:
            verdict = sent.verdict
            if sent.is_kafka:
                if sent.offset is None:
                    continue
                origin = f"{self.topic}/{sent.partition}/{sent.offset}"
                wanted = (
                    [(origin, verdict.rejected_whole)]
                    if verdict.rejected_whole
                    else [
                        (f"{origin}#{item.index}", f"{item.reason} | item {preview(item.item, 80)}")
                        for item in verdict.invalid
                    ]
                )
                for key, why in wanted:
                    found = letters.get(key) or letters.get(origin)
                    if not found:
                        missing.append(f"{key} ({why}) from {sent.where()}")
                    elif not all(str(letter.get("reason") or "").strip() for letter in found):
                        no_reason.append(f"{key}: {preview(found[0], 200)}")
            else:
                problem = self.http_problem(sent)
                if problem:
                    http_wrong.append(f"{sent.where()}: {problem}")
                elif sent.status in (200, 207):
                    keys = {item.index: f"http/{sent.request_id}#{item.index}" for item in verdict.invalid}
                    http_no_letter += [
                        f"{keys[item.index]} ({item.reason}) from {sent.where()}"
                        for item in verdict.invalid
                        if keys[item.index] not in letters
                    ]
        self.fail_if("iii", "invalid Kafka items / undecodable messages without a dead letter", missing, str)
        self.fail_if("iii", "dead letters without a reason", no_reason, str)
        self.fail_if("iii", "HTTP answers that do not report the rejections the body calls for", http_wrong, str)
        self.fail_if("iii", "HTTP rejections without a dead letter", http_no_letter, str)

    def http_problem(self, sent: Sent) -> str | None:
        verdict, item = sent.verdict, sent.input
        assert isinstance(item, HttpInput)
        if sent.error:
            return f"request failed: {sent.error}"
        body = answer_body(item, sent.status, sent.response)
        if verdict.rejected_whole:
            error = body.get("message") if item.path == "/v1/traces" else body.get("error")  # OTLP: a Status
            if sent.status != 400 or not error:
                return f"expected 400 with an error ({verdict.rejected_whole[:80]}), got {sent.status} {preview(body)}"
            return None
        if item.path == "/v1/traces":
            partial = body.get("partialSuccess", {})
            rejected = int(partial.get("rejectedSpans", 0) or 0)
            if sent.status != 200 or rejected != len(verdict.invalid) or (rejected and not partial.get("errorMessage")):
                return (
                    f"expected 200 with rejectedSpans={len(verdict.invalid)} "
                    f"(e.g. {verdict.invalid[0].reason if verdict.invalid else '-'}), "
                    f"got {sent.status} {preview(body)}"
                )
            return None
        want_status = 207 if verdict.invalid else 200
        errors = {e.get("index"): e for e in body.get("errors", [])}
        want_indexes = {i.index for i in verdict.invalid}
        if sent.status != want_status or body.get("accepted") != len(verdict.valid) or set(errors) != want_indexes:
            diff = sorted(want_indexes ^ set(errors))[:5]
            reasons = {x.index: x.reason for x in verdict.invalid}
            examples = [f"[{i}] oracle: {reasons.get(i, 'valid')}" for i in diff]
            return (
                f"expected {want_status} accepted={len(verdict.valid)} rejected={sorted(want_indexes)[:10]}, got "
                f"{sent.status} accepted={body.get('accepted')} rejected={sorted(errors)[:10]} {examples}"
            )
        if any(not (e.get("reason") and e.get("errors")) for e in errors.values()):
            return f"a rejected item without its error: {preview(body)}"
        return None

    # (iv)
    def check_commits(self, stored: Counter[SpanKey], letters: dict[str, list[dict[str, Any]]]) -> None:
        committed, ends = group_offsets(self.stack)
        self.offsets = (committed, ends)
        records = read_records(self.stack.bootstrap_servers, self.topic)
        self.records = len(records)
        unaccounted = []
        for record in records:
            if record.offset >= committed.get(record.partition, 0):
                continue
            origin = f"{self.topic}/{record.partition}/{record.offset}"
            verdict = kafka_verdict(record.value)
            lacking = []
            if verdict.rejected_whole:
                if origin not in letters:
                    lacking.append(f"no dead letter ({verdict.rejected_whole[:60]})")
            else:
                lacking += [
                    f"item {i.index} not dead-lettered ({i.reason[:60]})"
                    for i in verdict.invalid
                    if f"{origin}#{i.index}" not in letters and origin not in letters
                ]
                lacking += [
                    f"span {tuple(i.key)} not stored"
                    for i in verdict.valid
                    if stored[i.key] == 0 and i.start_time >= self.retained_from
                ]
            if lacking:
                unaccounted.append(
                    f"p{record.partition}@{record.offset} (committed {committed[record.partition]}): "
                    f"{'; '.join(lacking[:2])}{' …' if len(lacking) > 2 else ''}"
                )
        self.fail_if("iv", "messages below the committed offset neither stored nor dead-lettered", unaccounted, str)

    # (v)
    def check_worker(self) -> None:
        for exit_ in self.chaos.worker_exits:
            self.fail("v", exit_, [], 1)
        log = self.stack.home / "worker.log"
        crashes = crash_reports(log.read_text(errors="replace"))
        if crashes["ingest"]:
            self.fail(
                "v",
                f"ingest agent crashes / tracebacks through the ingest path in {log}",
                [f"{n}x {text}" for text, n in crashes["ingest"].most_common()],
                sum(crashes["ingest"].values()),
            )
        for text, n in crashes["other"].most_common(EXAMPLES):
            self.notes.append(f"not the ingest path, {n}x in {log.name}: {text}")

    # reporting
    def summary(self) -> str:
        sent = self.chaos.sent
        kafka = [s for s in sent if s.is_kafka]
        http = [s for s in sent if not s.is_kafka]
        valid = sum(len(s.verdict.valid) for s in sent)
        invalid = sum(len(s.verdict.invalid) for s in sent)
        whole = sum(1 for s in sent if s.verdict.rejected_whole)
        resent = sum(1 for s in sent if s.resend_of is not None)
        refused = [s for s in kafka if s.error]
        elapsed = time.monotonic() - self.chaos.started
        return (
            f"chaos[{self.chaos.broker}] CHAOS_SEED={SEED}: {len(kafka)} Kafka messages, {len(http)} HTTP bodies "
            f"({resent} re-sends), {valid:,} valid spans ({getattr(self, 'valid_keys', '?')} keys stored exactly "
            f"once, {getattr(self, 'maybe_keys', '?')} at most once), "
            f"{invalid:,} invalid items, {whole} undecodable messages/bodies; "
            f"{getattr(self, 'letter_count', '?')} dead letters, "
            f"{getattr(self, 'records', '?')} messages on the spans topic"
            f"{f', {len(refused)} refused by the broker' if refused else ''}; "
            f"{'; '.join(self.chaos.events)}; {elapsed:.0f}s; broken: "
            f"{', '.join(f'({k})' for k in INVARIANTS if k in self.broken) or 'none'}"
        )

    def coverage(self) -> str:
        """What the generators produced this run (originals only)."""
        originals = [s for s in self.chaos.sent if s.resend_of is None and s.input.label != "canary"]
        kafka = Counter(s.input.label.split("[")[0] for s in originals if s.is_kafka)
        http = Counter(s.input.label.split("[")[0] for s in originals if not s.is_kafka)
        headers = Counter(header_variant(s.input.headers) for s in originals if isinstance(s.input, KafkaInput))
        acme = [s for s in originals if s.input.tenant == "acme"]
        valid, invalid = sum(len(s.verdict.valid) for s in acme), sum(len(s.verdict.invalid) for s in acme)
        return (
            f"coverage: Kafka {dict(kafka)}; headers {dict(headers)}; HTTP {dict(http)}; "
            f"acme valid spans {valid:,}, invalid items {invalid:,}"
        )

    def details(self) -> list[str]:
        lines = [self.coverage()]
        for key, title in INVARIANTS.items():
            if key in self.broken:
                lines.append(f"BROKEN {title}:")
                lines += [f"  - {entry}" for entry in self.broken[key]]
        lines += [f"note: {note}" for note in self.notes]
        refused = [f"{s.where()}: {s.error}" for s in self.chaos.sent if s.is_kafka and s.error]
        if refused:
            lines.append("note: generated Kafka messages the broker refused (not part of any invariant):")
            lines += [f"  - {line}" for line in refused[:EXAMPLES]]
        return lines


def header_variant(headers: tuple[tuple[str, bytes | None], ...]) -> str:
    sources = [value for key, value in headers if key == inputs.SOURCE_HEADER]
    if len(sources) > 1:
        return "duplicated" + ("+null" if None in sources else "")
    if not sources:
        return "missing" if not headers else "missing+other"
    if sources[0] is None:
        return "null"
    try:
        sources[0].decode()
    except UnicodeDecodeError:
        return "non-utf8"
    return "empty" if not sources[0] else "utf8"


_CRASH = re.compile(r"Crashed reason=|Agent crashed|Traceback \(most recent call last\)")
_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)')
_LIBRARIES = (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], sysconfig.get_paths()["stdlib"])
#: The ingest path: the agent itself and the pipeline it drives (streams/app.py's ``ingest`` and
#: everything it calls in these modules); alerting and the query API share helpers but are not it.
_INGEST_MODULES = (
    "streams/pipeline.py",
    "streams/process.py",
    "streams/batcher.py",
    "streams/isolate.py",
    "streams/resends.py",
    "streams/commit.py",
)


def classify(block: str, first_line: str) -> str | None:
    """'ingest' for a crashed ingest agent or a traceback through the ingest path, 'other' for another
    traceback through Spanline's own code, None for library-only noise."""
    if "Crashed reason=" in first_line or "Agent crashed" in first_line:
        return "ingest" if "ingest" in first_line else "other"
    frames = [(path, function) for path, function in _FRAME.findall(block) if not path.startswith(_LIBRARIES)]
    if any(
        path.endswith(_INGEST_MODULES) or (path.endswith("streams/app.py") and function == "ingest")
        for path, function in frames
    ):
        return "ingest"
    return "other" if frames else None


def crash_reports(log: str) -> dict[str, Counter[str]]:
    """Crashed agents (mode's "Crashed reason=" log line) and tracebacks through Spanline's code, by
    class (see classify) and exception line."""
    lines = log.splitlines()
    found: dict[str, Counter[str]] = {"ingest": Counter(), "other": Counter()}
    index = 0
    while index < len(lines):
        line = lines[index]
        if not _CRASH.search(line):
            index += 1
            continue
        block = [lines[index - 1] if index else "", line]  # the line before says what failed
        index += 1
        has_traceback = "Traceback" in line or (index < len(lines) and lines[index].startswith("Traceback"))
        while has_traceback and index < len(lines):  # frames, the exception line; chained ones continue
            current = lines[index]
            block.append(current)
            index += 1
            if current.strip() and not current.startswith((" ", "\t", "Traceback", "During handling", "The above")):
                following = next((text for text in lines[index : index + 3] if text.strip()), "")
                if not following.startswith(("During handling", "The above")):
                    break
        kind = classify("\n".join(block), line)
        if kind is not None:
            head = line if "Traceback" not in line else block[0]
            context = re.sub(r"^\[[\d\-: ,]+\]\s*\[\d+\]\s*\[[A-Z]+\]\s*", "", head.strip())  # time, pid, level
            exception = block[-1].strip()
            found[kind][f"{context[:160]} … {exception[:200]}" if exception != line.strip() else context[:200]] += 1
    return found
