"""Real Kafka brokers for the tests: Apache Kafka (single-node KRaft, Maven Central jars) and tansu.

Apache Kafka is the reference for exactness-critical behaviour (tansu has no transactions and
approximate watermarks, see docs/architecture.md), tansu is what the embedded mode ships; end-to-end tests
take `kafka_broker` and run once per broker. A missing Java or Maven fails the fixture with
the fix in the message: the tests never skip.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from spanline.kafka.admin import metadata_answers
from spanline.kafka.tansu import TansuBroker, die_with_parent, signal_group

REPO = Path(__file__).resolve().parents[2]
POM = REPO / "support" / "kafka" / "pom.xml"
LOG4J = REPO / "support" / "kafka" / "log4j.properties"


class BrokerSetupError(RuntimeError):
    """Java, Maven or the Kafka jars are missing or broken; the message says how to fix it."""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all bound at once, so no port is handed out twice)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def kafka_version() -> str:
    """The Kafka version pinned in the pom, so the pom stays the only place to change it."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ElementTree.parse(POM).getroot().find("m:properties/m:kafka.version", namespace)
    if version is None or not version.text:
        raise BrokerSetupError(f"{POM} has no <kafka.version> property")
    return version.text.strip()


def default_jar_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "spanline" / f"kafka-{kafka_version()}"


def ensure_jars(target: Path | None = None) -> Path:
    """Download Kafka's runtime jars with Maven once; later runs reuse the cache directory.

    Maven writes into a private staging directory renamed into place at the end, so an
    interrupted download never looks like a complete cache.
    """
    target = target or default_jar_dir()
    if (target / f"kafka_2.13-{kafka_version()}.jar").is_file():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerSetupError(
            f"Maven (mvn) is not on PATH: the Apache Kafka test broker's jars are fetched once with "
            f"`mvn -f {POM} dependency:copy-dependencies` into {target}. Install Maven "
            "(e.g. `apt-get install maven`) and rerun."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise BrokerSetupError(f"Maven could not fetch the Kafka jars (exit {result.returncode}):\n{output}")
    try:
        staging.rename(target)
    except OSError:  # another process finished first; its copy is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
    return target


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerSetupError(
            "Java is not on PATH (nor in $JAVA_HOME): the Apache Kafka test broker needs Java 17, "
            "e.g. `apt-get install openjdk-17-jre-headless`."
        )
    return java


def new_cluster_id() -> str:
    """Kafka's Uuid text form (URL-safe base64, no padding), never starting with '-' like Kafka's own."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


class ApacheKafkaBroker:
    """One combined broker+controller KRaft node on loopback ports chosen at construction.

    The ports and data directory survive stop/kill/restart, so clients can reconnect and
    tests can check what a crash leaves behind.
    """

    name = "apache"

    def __init__(self, workdir: Path, heap: str = "768m") -> None:
        self.workdir = workdir
        self.heap = heap
        self.port, self.controller_port = free_ports(2)
        self.log_path = workdir / "broker.log"
        self.data_dir = workdir / "data"
        self.properties_path = workdir / "server.properties"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_properties(self) -> None:
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "4",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",  # 50 by default: slower first group join
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            # After a kill the controller keeps the dead incarnation registered until its session
            # expires (9 s by default) and refuses the restarted broker until then.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
        }
        self.properties_path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))

    def _java(self, main_class: str, *args: str, heap: str) -> list[str]:
        return [
            java_binary(),
            f"-Xmx{heap}",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{LOG4J}",
            "-cp",
            f"{ensure_jars()}/*",
            main_class,
            *args,
        ]

    def _format(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_properties()
        result = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(self.properties_path),
                heap="256m",
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        with open(self.log_path, "a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise BrokerSetupError(f"kafka StorageTool format failed (exit {result.returncode}); see {self.log_path}")

    def start(self, timeout_s: float = 90.0) -> None:
        """Format storage on first start, spawn the broker, return once it answers Metadata."""
        if self.running:
            return
        if not (self.data_dir / "meta.properties").is_file():
            self._format()
        command = self._java("kafka.Kafka", str(self.properties_path), heap=self.heap)
        with open(self.log_path, "ab") as log:
            log.write(f"--- tests: starting Apache Kafka at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        deadline = time.monotonic() + timeout_s
        while not metadata_answers(self.bootstrap_servers, 2.0):
            if self._process.poll() is not None:
                raise BrokerSetupError(f"Apache Kafka exited with status {self._process.returncode} while starting")
            if time.monotonic() >= deadline:
                self.kill()
                raise BrokerSetupError(f"Apache Kafka did not answer a metadata request within {timeout_s:g} s")
            time.sleep(0.1)

    def _signal(self, signum: int, wait_s: float | None) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        signal_group(process, signum)
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            process.wait()

    def stop(self, grace_s: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after grace_s."""
        self._signal(signal.SIGTERM, grace_s)

    def kill(self) -> None:
        """Crash the broker (SIGKILL): no controlled shutdown, unflushed state is recovered on restart."""
        self._signal(signal.SIGKILL, None)

    def restart(self, timeout_s: float = 90.0) -> None:
        """Stop (if running) and start again on the same ports and data."""
        self.stop()
        self.start(timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _start_or_fail(broker: ApacheKafkaBroker | TansuBroker) -> None:
    """Start a broker, or fail (never skip) the fixture with the reason and the broker's log tail."""
    try:
        broker.start()
        return
    except Exception as exc:  # any start failure must reach the test report with the broker's own words
        broker.stop()
        reason = f"{type(exc).__name__}: {exc}"
    pytest.fail(
        f"the {broker.name} Kafka broker did not start: {reason}\n"
        f"--- last lines of {broker.log_path}:\n{broker.log_tail()}",
        pytrace=False,
    )


@contextmanager
def running_apache_kafka(workdir: Path) -> Iterator[ApacheKafkaBroker]:
    """A started Apache Kafka broker (the fixture fails with its log tail if it cannot start)."""
    broker = ApacheKafkaBroker(workdir)
    _start_or_fail(broker)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafkaBroker]:
    with running_apache_kafka(tmp_path_factory.mktemp("apache-kafka")) as broker:
        yield broker


@pytest.fixture(scope="session")
def tansu_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    (port,) = free_ports(1)
    broker = TansuBroker(port, log_path=tmp_path_factory.mktemp("tansu") / "tansu.log")
    _start_or_fail(broker)
    yield broker
    broker.stop()


@pytest.fixture(scope="session", params=["apache", "tansu"])
def kafka_broker(request: pytest.FixtureRequest) -> ApacheKafkaBroker | TansuBroker:
    """Each broker in turn (both have .name and .bootstrap_servers); only the one in use is started."""
    broker: ApacheKafkaBroker | TansuBroker = request.getfixturevalue(f"{request.param}_kafka")
    return broker
