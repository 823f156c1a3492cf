"""`spanline demo`: start the embedded stack, replay traffic with an incident, wait until stored and
paged, summarise the spend and the alerts, write the HTML report."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.table import Table

from spanline.errors import SpanlineError
from spanline.settings import Settings
from spanline.simulator.simulate import simulate
from spanline.sql.queries import run_query
from spanline.sql.service_file import ServiceFile
from spanline.sql.statements import render_statement
from spanline.summary import print_summary
from spanline.traces.links import trace_command

READY_TIMEOUT_S = 90.0
STORE_TIMEOUT_S = 180.0
#: The incident replayed after the baseline minutes: an outage pages on a static threshold (no
#: baseline history needed) a few simulated minutes after it starts, so a fresh stack shows it.
DEMO_SCENARIO = "provider-outage"
INCIDENT_MINUTES = 8.0
#: Quiet simulated minutes after the incident: their spans move event time on, closing its windows.
AFTER_MINUTES = 3.0
#: The page follows the last replayed minutes' windows: a partition that got no more spans closes
#: them after SPANLINE_WINDOW_IDLE_S (30 s) of wall clock, and a busy machine adds a minute or
#: more (90 s was missed twice on this project's test box under load; quiet, the whole demo takes ~40 s).
ALERT_TIMEOUT_S = 180.0


def run_demo(settings: Settings, *, minutes: float, rate: float, console: Console) -> None:
    started = time.perf_counter()
    settings.home.mkdir(parents=True, exist_ok=True)
    log_path = settings.home / "up.log"
    console.print(f"starting the embedded stack (logs: {log_path})")
    with open(log_path, "ab") as log:
        # its own session: a Ctrl-C in the terminal reaches only the demo, which then stops `up`
        # with one signal (a second one would cut its drain short)
        up = subprocess.Popen(
            [sys.executable, "-m", "spanline.cli", "up"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,
        )
    try:
        _wait_ready(settings, up)
        before = _stored(settings)
        sent_at = datetime.now(UTC)
        total = minutes + INCIDENT_MINUTES + AFTER_MINUTES
        console.print(
            f"replaying {minutes:g} min of baseline traffic, then {INCIDENT_MINUTES:g} min of "
            f"{DEMO_SCENARIO} and {AFTER_MINUTES:g} quiet min"
        )
        report = simulate(
            settings,
            minutes=total,
            rate=rate,
            console=console,
            scenario=DEMO_SCENARIO,
            incident_at_min=minutes,
            incident_minutes=INCIDENT_MINUTES,
        )
        console.print(f"sent {report.accepted:,} spans ({report.rejected} rejected) in {report.seconds:.1f}s")
        _wait_stored(settings, before + report.accepted, console)
        print_summary(settings, console)
        replayed_from = sent_at - timedelta(minutes=total)
        _show_alerts(settings, _wait_paged(settings, replayed_from, console), console)
        _write_report(settings, total, console)
        console.print(f"demo finished in {time.perf_counter() - started:.1f}s; the stack is stopping")
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=settings.drain_timeout_s + 30)  # the drain, then Faust's and the broker's stop
        except subprocess.TimeoutExpired:
            up.kill()


def _alerts_since(settings: Settings, since: datetime) -> list[tuple[object, ...]]:
    """State changes at or after ``since`` in event time (the replayed window), oldest first.

    Event time, not the write time: a demo run again within minutes replays event time the worker
    has already evaluated (it ignores those minutes), and the page of that window is already here.
    """
    sql = render_statement("demo_alerts_since", database=settings.clickhouse_database)
    return [tuple(row) for row in run_query(settings, sql, {"since": since}).rows]


def _wait_paged(settings: Settings, since: datetime, console: Console) -> list[tuple[object, ...]]:
    """The alerts table's rows of the replayed window, once the incident's page is there."""
    deadline = time.monotonic() + ALERT_TIMEOUT_S
    with console.status(f"waiting for the {DEMO_SCENARIO} page") as status:
        while time.monotonic() < deadline:
            rows = _alerts_since(settings, since)
            if any(row[1] == "firing" and row[5] == "provider-outage" for row in rows):
                return rows
            status.update(f"{len(rows)} alert state change(s) so far")
            time.sleep(0.5)
    raise SpanlineError(f"no {DEMO_SCENARIO} page within {ALERT_TIMEOUT_S:.0f}s; see {settings.home / 'up.log'}")


def _show_alerts(settings: Settings, rows: list[tuple[object, ...]], console: Console) -> None:
    """The pages of this run as the ``alerts`` table holds them (the log notifier printed them to up.log)."""
    table = Table(title="Alerts (ClickHouse alerts table)")
    for column in ("at", "state", "rule", "severity", "runbook", "branch"):
        table.add_column(column, no_wrap=True)
    table.add_column("scope", overflow="fold")
    table.add_column("summary", overflow="fold")
    examples_to_open: list[str] = []
    for at, state, rule, severity, scope, runbook, branch, summary, examples in rows:
        where = ", ".join(f"{k}={v}" for k, v in sorted(scope.items())) if isinstance(scope, dict) else str(scope)
        text = str(summary).split("]: ", 1)[-1]  # the stored summary starts with "rule [scope]: "
        table.add_row(str(at)[11:16], str(state), str(rule), str(severity), str(runbook), str(branch), where, text)
        if state == "firing" and isinstance(examples, list | tuple) and examples:
            examples_to_open.append(f"{rule} [{where}]: {trace_command(str(examples[0]))}")
    console.print(table)
    for line in examples_to_open:  # whole lines, so the command can be copied
        console.print(f"worst example trace of {line}", soft_wrap=True)
    console.print(f"pages also went to the log notifier: {settings.home / 'up.log'}")


def _write_report(settings: Settings, minutes: float, console: Console) -> None:
    """The dashboards' panels over the simulated window (plus 5 minutes) as one HTML file."""
    from spanline.dashboards.report import write_report

    path = settings.home / "report.html"
    report = write_report(settings, timedelta(minutes=math.ceil(minutes) + 5), path)
    if report.failures:
        raise SpanlineError(f"report panels failed: {report.failures}")
    console.print(f"report with {report.panels} panels: {path}")


def _wait_ready(settings: Settings, up: subprocess.Popen[bytes]) -> None:
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
            return bool(response.status == 200)
    except OSError:
        return False


def _stored(settings: Settings) -> int:
    result = run_query(settings, render_statement("demo_stored_spans", database=settings.clickhouse_database))
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
