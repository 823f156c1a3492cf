"""`spanline demo`: start the embedded stack, replay traffic, wait until stored, summarise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from rich.console import Console

from spanline.embedded.service_file import ServiceFile
from spanline.errors import SpanlineError
from spanline.queries import run_query
from spanline.settings import Settings
from spanline.simulate import simulate
from spanline.summary import print_summary

READY_TIMEOUT_S = 90.0
STORE_TIMEOUT_S = 180.0


def run_demo(settings: Settings, *, minutes: float, rate: float, console: Console) -> None:
    started = time.perf_counter()
    settings.home.mkdir(parents=True, exist_ok=True)
    log_path = settings.home / "up.log"
    console.print(f"starting the embedded stack (logs: {log_path})")
    with open(log_path, "ab") as log:
        up = subprocess.Popen([sys.executable, "-m", "spanline.cli", "up"], stdout=log, stderr=subprocess.STDOUT,
                              env=os.environ.copy())
    try:
        _wait_ready(settings, up)
        before = _stored(settings)
        report = simulate(settings, minutes=minutes, rate=rate, console=console)
        console.print(f"sent {report.accepted:,} spans ({report.rejected} rejected) in {report.seconds:.1f}s")
        _wait_stored(settings, before + report.accepted, console)
        print_summary(settings, console)
        console.print(f"demo finished in {time.perf_counter() - started:.1f}s; the stack is stopping")
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()


def _wait_ready(settings: Settings, up: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    url = f"http://{settings.collector_host}:{settings.collector_port}/readyz"
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise SpanlineError(f"`spanline up` exited with {up.returncode}; see {settings.home / 'up.log'}")
        if ServiceFile(settings.home).read() is not None and _ok(url):
            return
        time.sleep(0.3)
    raise SpanlineError(f"the stack was not ready after {READY_TIMEOUT_S:.0f}s; see {settings.home / 'up.log'}")


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stored(settings: Settings) -> int:
    result = run_query(settings, f"SELECT count() FROM {settings.clickhouse_database}.spans")
    return int(result.rows[0][0])


def _wait_stored(settings: Settings, expected: int, console: Console) -> None:
    deadline = time.monotonic() + STORE_TIMEOUT_S
    with console.status("waiting for the worker to store every span") as status:
        while time.monotonic() < deadline:
            stored = _stored(settings)
            status.update(f"stored {stored:,} / {expected:,} spans")
            if stored >= expected:
                return
            time.sleep(0.5)
    raise SpanlineError(f"only {_stored(settings):,} of {expected:,} spans stored after {STORE_TIMEOUT_S:.0f}s")
