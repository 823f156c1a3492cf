"""Stopping `spanline up` loses nothing: SIGTERM right after the last 200 drains before stopping.

The embedded broker keeps messages in memory only, so whatever the worker had not stored when
`up` stopped used to be gone with it. Now the receiver closes, the worker stores everything it
accepted, and only then do the worker and the broker stop: the chDB data, opened after the
process exited, holds every accepted span exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from spanline.sql.client import connect
from spanline.sql.service_file import ServiceFile
from tests.support.metrics import scrape
from tests.support.stack import Stack, embedded_env
from tests.test_pipeline_e2e import canonical

pytestmark = pytest.mark.e2e

SPANS = 6_000
PER_REQUEST = 200
DRAIN_TIMEOUT_S = 60.0


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Stack]:
    """`python -m spanline up` on a fresh home; a Stack only for its HTTP and waiting helpers."""
    env = embedded_env(tmp_path, SPANLINE_DRAIN_TIMEOUT_S=str(DRAIN_TIMEOUT_S))
    stack = Stack("", tmp_path, env=env)
    with open(tmp_path / "up.log", "ab") as log:
        stack.worker = subprocess.Popen(
            [sys.executable, "-m", "spanline", "up"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        stack.wait_until(
            lambda: ServiceFile(tmp_path).read() is not None and _ready(stack.collector_url), 120, "`spanline up`"
        )
        yield stack
    finally:
        stack.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_sigterm_right_after_the_last_200_stores_every_accepted_span_once(up: Stack) -> None:
    key = orjson.loads((up.home / "api_keys.json").read_bytes())["acme"]
    run = f"drain{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC) - timedelta(minutes=10)
    spans = [canonical(run, i, start_time=(start + timedelta(milliseconds=i)).isoformat()) for i in range(SPANS)]
    bodies = [orjson.dumps(spans[i : i + PER_REQUEST]) for i in range(0, SPANS, PER_REQUEST)]
    # the first request stored, so the signal finds the worker mid-stream rather than starting up
    assert up.post("/v1/spans", bodies.pop(0), key)[0] == 200
    up.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {run:String}", PER_REQUEST, run=run)
    # Embedded, the receiver runs inside the worker: both /metrics pages show both processes' series.
    worker_page = f"http://127.0.0.1:{up.settings.worker_web_port}"
    stored = "spanline_worker_spans_stored_total"  # counted just after the rows became visible
    up.wait_until(lambda: scrape(worker_page).value(stored) == PER_REQUEST, 10, "the stored-spans counter")
    for page in (up.collector_url, worker_page):
        samples = scrape(page)
        assert samples.value("spanline_receiver_items_total", endpoint="spans", outcome="accepted") == PER_REQUEST
        assert samples.value(stored) == PER_REQUEST
    with ThreadPoolExecutor(4) as pool:
        statuses = [status for status, _ in pool.map(lambda body: up.post("/v1/spans", body, key), bodies)]
    assert up.worker is not None
    up.worker.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert statuses == [200] * len(bodies)

    up.worker.wait(timeout=DRAIN_TIMEOUT_S + 30)
    drain_s = time.monotonic() - signalled
    log = (up.home / "up.log").read_text(errors="replace")
    marks = ("SIGTERM:", "drain:", "draining:", "drained:")
    drain_lines = [line for line in log.splitlines() if any(mark in line for mark in marks)]
    print(
        f"\nSIGTERM -> exit {drain_s:.1f} s after {SPANS - PER_REQUEST} spans in {len(bodies)} requests:",
        *drain_lines,
        sep="\n",
    )
    assert up.worker.returncode == 0, log[-3000:]
    assert drain_s < DRAIN_TIMEOUT_S, log[-3000:]
    assert "SIGTERM: stopping; no longer accepting spans" in log
    assert "drained: every accepted span is stored" in log, log[-3000:]

    client = connect(f"chdb://{up.home / 'clickhouse'}", "spanline")
    try:
        rows, distinct = client.query(
            "SELECT count(), uniqExact(span_id) FROM spans WHERE service = {run:String}", parameters={"run": run}
        ).result_rows[0]
    finally:
        client.close()
    assert (rows, distinct) == (SPANS, SPANS), f"stored {rows} rows of {distinct} distinct spans; accepted {SPANS}"
