"""Broker readiness and topic creation, shared by the embedded mode, the CLI and the tests.

Topics are always created explicitly with their partition count: tansu auto-creates unknown
topics with 4 partitions and Apache Kafka may be configured to, so a producer racing the
creation would silently fix the wrong layout. Counts are read back to catch exactly that.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from spanline.errors import ConfigError, SpanlineError

log = logging.getLogger(__name__)

_POLL_S = 0.1


class BrokerUnavailableError(SpanlineError):
    """No Kafka broker answered at the configured address in time."""


def _addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    pairs = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        pairs.append((host.strip("[]") or "localhost", int(port)))
    return pairs


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


def _accepts_connections(bootstrap_servers: str) -> bool:
    """Cheap TCP check first, so polling a starting broker does not flood kafka-python's error log."""
    for address in _addresses(bootstrap_servers):
        try:
            with socket.create_connection(address, timeout=0.5):
                return True
        except OSError:
            continue
    return False


@contextmanager
def _admin(bootstrap_servers: str, timeout_s: float) -> Iterator[KafkaAdminClient]:
    timeout_ms = max(100, int(timeout_s * 1000))
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="spanline-admin",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
    )
    try:
        yield admin
    finally:
        admin.close()


def metadata_answers(bootstrap_servers: str, timeout_s: float) -> bool:
    """One bounded attempt: True when the cluster answers a Metadata request."""
    if not _accepts_connections(bootstrap_servers):
        return False
    try:
        with _admin(bootstrap_servers, timeout_s) as admin:
            admin.list_topics()
    except KafkaError as exc:
        log.debug("Kafka at %s not ready: %s", bootstrap_servers, exc)
        return False
    return True


def wait_for_broker(bootstrap_servers: str, timeout_s: float) -> None:
    """Block until a Metadata request succeeds; raise BrokerUnavailableError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not metadata_answers(bootstrap_servers, min(5.0, _left(deadline))):
        if time.monotonic() >= deadline:
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {bootstrap_servers} within {timeout_s:g} s: is it running, "
                "and is SPANLINE_KAFKA_BOOTSTRAP_SERVERS right?"
            )
        time.sleep(_POLL_S)


def _create_missing(admin: KafkaAdminClient, topics: dict[str, int], replication: int, timeout_s: float) -> list[str]:
    """Create the topics the cluster lacks; return the names this call created."""
    missing = sorted(set(topics) - set(admin.list_topics()))
    if not missing:
        return []
    request = {name: {"num_partitions": topics[name], "replication_factor": replication} for name in missing}
    response = admin.create_topics(request, timeout_ms=int(timeout_s * 1000), raise_errors=False)
    created = []
    for topic in response["topics"]:
        error = for_code(topic["error_code"])
        if error is TopicAlreadyExistsError:
            continue
        if topic["error_code"] != 0:
            failure = error(f"creating topic {topic['name']!r}: {topic.get('error_message') or error.__name__}")
            if failure.retriable:
                raise failure
            raise ConfigError(
                f"Kafka refused to create topic {topic['name']!r} with {topics[topic['name']]} partitions and "
                f"replication {replication}: {topic.get('error_message') or error.__name__} "
                "(check SPANLINE_TOPIC_PARTITIONS / SPANLINE_TOPIC_REPLICATION)"
            )
        created.append(topic["name"])
    return created


def _check_partitions(admin: KafkaAdminClient, topics: dict[str, int], created: set[str], timeout_s: float) -> None:
    """Wait until every topic has a leader per partition, then compare partition counts."""
    admin.wait_for_topics(list(topics), timeout_ms=max(100, int(timeout_s * 1000)))
    counts = {topic["name"]: len(topic["partitions"]) for topic in admin.describe_topics(list(topics))}
    for name, wanted in topics.items():
        if counts[name] == wanted:
            continue
        if name in created:
            raise ConfigError(
                f"topic {name!r} was created with {wanted} partitions but has {counts[name]}: something "
                "(a producer on a broker that auto-creates topics?) created it first; delete it and retry"
            )
        log.warning("topic %r already exists with %d partitions (wanted %d); keeping it", name, counts[name], wanted)


def ensure_topics(bootstrap_servers: str, topics: dict[str, int], replication: int = 1, timeout_s: float = 30) -> None:
    """Create missing topics with their partition counts and wait until all are usable.

    Waits for the broker first and retries retriable Kafka errors (a broker still starting
    up has no controller yet) until timeout_s; existing topics are kept as they are.
    """
    deadline = time.monotonic() + timeout_s
    created: set[str] = set()
    while True:
        wait_for_broker(bootstrap_servers, _left(deadline))
        try:
            with _admin(bootstrap_servers, _left(deadline)) as admin:
                created.update(_create_missing(admin, topics, replication, _left(deadline)))
                _check_partitions(admin, topics, created, _left(deadline))
        except KafkaError as exc:
            if not exc.retriable:
                raise SpanlineError(f"Kafka at {bootstrap_servers} refused the topic set-up: {exc}") from exc
            if time.monotonic() >= deadline:
                raise BrokerUnavailableError(
                    f"could not create topics {sorted(topics)} at {bootstrap_servers} within {timeout_s:g} s: {exc}"
                ) from exc
            log.info("retrying topic creation at %s: %s", bootstrap_servers, exc)
            time.sleep(_POLL_S)
            continue
        if created:
            log.info("created topics %s at %s", ", ".join(sorted(created)), bootstrap_servers)
        return


def topic_id(bootstrap_servers: str, topic: str, timeout_s: float = 30) -> str:
    """The topic's id (KIP-516): it changes when a topic is deleted and created again.

    Offsets restart at 0 in a new incarnation, so anything keyed by offsets (the ingest
    ledger, insert dedup tokens) must be keyed by the topic id too.
    """
    wait_for_broker(bootstrap_servers, timeout_s)
    with _admin(bootstrap_servers, timeout_s) as admin:
        [description] = admin.describe_topics([topic])
    if description.get("error_code") or not description.get("topic_id"):
        raise SpanlineError(f"Kafka at {bootstrap_servers} has no topic {topic!r} (run `spanline up` or create it)")
    return str(description["topic_id"])
