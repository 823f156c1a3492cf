"""Incident onset → page, end to end in live-paced traffic (issue 16: an outage pages within 2
minutes of event time, a 429 storm within 3).

One embedded stack (tansu broker, `spanline collect`, `spanline worker` with its defaults and a
webhook receiver pointing here) and the simulator's traffic through the real HTTP receiver:
first an hour of history replayed as fast as it is accepted (the 429 rule compares with a
trailing hour), then live: every span is sent when the wall clock reaches its end time, as an
SDK exports it. Live traffic carries a `rate-limit-storm` (the largest tenant's OpenAI 429s),
then a `provider-outage` (85% of Anthropic attempts fail). For each incident it prints the event
time of onset, the event time of the page (the end of the minute whose evaluation fired it),
and the wall delay from onset to the webhook's arrival.

    python bench/alert_delay.py                # about 20 minutes: live-paced
    python bench/alert_delay.py --speed 4      # event time runs 4x the wall clock (say so when quoting)
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.embedded import BenchStack, bench_stack
from bench.report import publish
from spanline.simulator.scenarios import get_scenario
from spanline.simulator.sender import send_chunks
from spanline.simulator.workload import WorkloadConfig, generate_traces

KEYS = {"acme": "key-acme-0123456789", "globex": "key-globex-0123456789", "initech": "key-initech-0123456789"}
#: Live traffic starts this long before "now" (sent at once, then paced): no seam at the switch.
PACED_BEFORE_NOW_S = 180.0
#: Spans per request while replaying the history (the receiver takes up to 500 per message).
HISTORY_CHUNK_SPANS = 1500
TICK_S = 0.2  # the SDK's default flush interval


@dataclass(frozen=True)
class Incident:
    scenario: str
    rule: str
    provider: str
    target_s: float  # the target, onset -> page in event time
    onset: datetime
    config: WorkloadConfig


@dataclass
class Page:
    arrived: float  # wall clock, time.time()
    at: datetime  # end of the evaluated minute that fired it
    severity: str


class Webhook:
    """The worker's generic webhook receiver points here: every notification, with its arrival time."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((time.time(), await request.json()))
        return web.json_response({"ok": True})

    def first_page(self, incident: Incident) -> Page | None:
        for arrived, body in self.received:
            for alert in body.get("alerts", []):
                if (
                    alert["rule"] == incident.rule
                    and alert["state"] == "firing"
                    and alert["scope"].get("provider") == incident.provider
                ):
                    return Page(arrived, datetime.fromisoformat(alert["at"]), alert["severity"])
        return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def incidents(now: datetime, rate: float, history_min: float, lead_min: float, incident_min: float) -> list[Incident]:
    """The storm after ``history_min`` of history + ``lead_min`` of live traffic; the outage in a
    second stretch of traffic right after it, ``lead_min`` in (each stretch a scenario's workload)."""
    tenants = tuple(sorted(KEYS))
    storm_start = now - timedelta(minutes=history_min)
    storm_minutes = history_min + lead_min + incident_min
    storm = get_scenario("rate-limit-storm").workload(
        start=storm_start,
        hours=storm_minutes / 60,
        requests_per_s=rate,
        tenants=tenants,
        incident_at_min=history_min + lead_min,
        incident_minutes=incident_min,
    )
    outage_start = storm_start + timedelta(minutes=storm_minutes)
    outage = get_scenario("provider-outage").workload(
        start=outage_start,
        hours=(lead_min + incident_min) / 60,
        requests_per_s=rate,
        tenants=tenants,
        incident_at_min=lead_min,
        incident_minutes=incident_min,
    )
    return [
        Incident("rate-limit-storm", "rate_limiting", "openai", 180.0, now + timedelta(minutes=lead_min), storm),
        Incident(
            "provider-outage", "error_rate", "anthropic", 120.0, outage_start + timedelta(minutes=lead_min), outage
        ),
    ]


def seconds_of(config: WorkloadConfig) -> Iterator[tuple[float, list[dict[str, object]]]]:
    """(epoch second of the requests' arrival, their spans), one per simulated second."""
    start = config.start.timestamp()
    for second, chunk in enumerate(generate_traces(config)):
        yield start + second, chunk


def end_of(span: dict[str, object]) -> float:
    start = datetime.fromisoformat(str(span["start_time"]).replace("Z", "+00:00")).timestamp()
    return start + float(span.get("duration_ms") or 0.0) / 1000.0  # type: ignore[arg-type]


class Pacer:
    """Event time = ``origin`` + (wall clock − wall at the live start) × speed; a span goes when
    event time reaches its end (spans already ended go at once). Event time trails the wall clock
    by the time the history took, a constant offset the pipeline's lag figure ignores."""

    def __init__(self, url: str, origin: float, speed: float) -> None:
        self.url, self.origin, self.speed = url, origin, speed
        self.wall_start = time.time()  # set again when live traffic starts (start_live)
        self._pending: list[tuple[float, int, dict[str, object]]] = []
        self._order = count()
        self.sent = 0

    def event_now(self) -> float:
        return self.origin + (time.time() - self.wall_start) * self.speed

    def wall_of(self, event: float) -> float:
        return self.wall_start + (event - self.origin) / self.speed

    async def history(self, chunks: Iterator[tuple[float, list[dict[str, object]]]], until: float) -> None:
        """Every trace that arrives before ``until``, whole and in arrival order, as fast as accepted
        (what `spanline simulate` does); returns with the first later second pushed back."""

        def batches() -> Iterator[list[dict[str, object]]]:
            batch: list[dict[str, object]] = []
            for second, chunk in chunks:
                if second >= until:
                    self._push(chunk)
                    break
                batch += chunk
                if len(batch) >= HISTORY_CHUNK_SPANS:
                    yield batch
                    batch = []
            if batch:
                yield batch

        report = await send_chunks(self.url, KEYS, batches())
        self.sent += report.accepted

    def start_live(self) -> None:
        """Event time ``origin`` is now: the history took what it took, the live part starts here."""
        self.wall_start = time.time()

    async def live(self, chunks: Iterator[tuple[float, list[dict[str, object]]]], stop: float) -> None:
        """Requests enter when event time reaches their arrival; their spans leave at their end."""
        for second, chunk in chunks:
            while self.event_now() < second:
                await self._send_due()
                await asyncio.sleep(TICK_S)
            self._push(chunk)
        while self._pending and self.event_now() < stop:
            await self._send_due()
            await asyncio.sleep(TICK_S)

    def _push(self, chunk: list[dict[str, object]]) -> None:
        for span in chunk:
            heapq.heappush(self._pending, (end_of(span), next(self._order), span))

    async def _send_due(self) -> None:
        now = self.event_now()
        due = []
        while self._pending and self._pending[0][0] <= now:
            due.append(heapq.heappop(self._pending)[2])
        if due:
            report = await send_chunks(self.url, KEYS, [due])
            self.sent += report.accepted


def worker_gauge(port: int, name: str) -> float | None:
    """A gauge of the worker's /metrics (summed over labels); None when it is not exposed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    values = [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name)]
    return sum(values) if values else None


def start_receiver(stack: BenchStack, port: int) -> subprocess.Popen[bytes]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SPANLINE_")}, **stack.env}
    env |= {"SPANLINE_COLLECTOR_PORT": str(port), "SPANLINE_HOME": str(stack.root / "receiver")}
    receiver = subprocess.Popen(
        [sys.executable, "-m", "spanline.cli", "collect"],
        env=env,
        stdout=open(stack.root / "receiver.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if receiver.poll() is not None:
            raise RuntimeError(f"the receiver exited; see {stack.root / 'receiver.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return receiver
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the receiver was not ready after 60 s; see {stack.root / 'receiver.log'}")


async def run(args: argparse.Namespace) -> dict[str, object]:
    webhook = Webhook()
    app = web.Application()
    app.router.add_post("/hook", webhook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port, collector_port, broker_port, web_port = free_port(), free_port(), free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    env = {
        "SPANLINE_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/hook",
        "SPANLINE_API_KEYS": orjson.dumps(KEYS).decode(),
    }
    if args.grace_s is not None:
        env["SPANLINE_WINDOW_GRACE_S"] = str(args.grace_s)
    with bench_stack(partitions=4, broker_port=broker_port, first_web_port=web_port, **env) as stack:
        stack.start_workers(1)
        receiver = start_receiver(stack, collector_port)
        try:
            now = datetime.fromtimestamp(int(time.time()), UTC)
            plan = incidents(now, args.rate, args.history_min, args.lead_min, args.incident_min)
            pacer = Pacer(f"http://127.0.0.1:{collector_port}", now.timestamp(), args.speed)
            chunks = (item for incident in plan for item in seconds_of(incident.config))
            started = time.time()
            await pacer.history(chunks, now.timestamp() - PACED_BEFORE_NOW_S)
            history_s = time.time() - started
            print(f"history sent in {history_s:.0f} s ({pacer.sent:,} spans); live from here", flush=True)
            pacer.start_live()
            at_onset: dict[str, dict[str, float | None]] = {}

            async def watch_onsets() -> None:
                for incident in plan:
                    await asyncio.sleep(max(0.0, pacer.wall_of(incident.onset.timestamp()) - time.time()))
                    at_onset[incident.scenario] = {
                        "consumer_lag": worker_gauge(web_port, "spanline_worker_consumer_lag_messages"),
                        "last_minute": worker_gauge(web_port, "spanline_alert_last_evaluated_minute_seconds"),
                    }
                    print(f"{incident.scenario} starts (event time {incident.onset:%H:%M:%S})", flush=True)

            stop = max(i.onset.timestamp() for i in plan) + args.incident_min * 60
            watcher = asyncio.create_task(watch_onsets())
            await pacer.live(chunks, stop)
            await watcher
            deadline = time.time() + args.wait_s
            while time.time() < deadline and not all(webhook.first_page(i) for i in plan):
                await asyncio.sleep(1)
            worker = stack.workers[0]
            late = worker.scalar("SELECT sum(late_spans) FROM {db}.metric_windows")
            windowed = worker.scalar("SELECT sum(spans) FROM {db}.metric_windows")
        finally:
            receiver.terminate()
            receiver.wait(30)
            await runner.cleanup()
    rows = []
    for incident in plan:
        page = webhook.first_page(incident)
        onset = incident.onset.timestamp()
        state = at_onset.get(incident.scenario, {})
        last = state.get("last_minute")
        rows.append(
            {
                "scenario": incident.scenario,
                "rule": incident.rule,
                "onset": incident.onset.isoformat(),
                "page_minute_end": page.at.isoformat() if page else None,
                "severity": page.severity if page else None,
                "event_delay_s": round(page.at.timestamp() - onset, 1) if page else None,
                "wall_delay_s": round(page.arrived - pacer.wall_of(onset), 1) if page else None,
                "target_s": incident.target_s,
                "worker_lag_messages_at_onset": state.get("consumer_lag"),
                "evaluated_through_at_onset": None if not last else datetime.fromtimestamp(last + 60, UTC).isoformat(),
            }
        )
    print()
    print(
        f"{'incident':<18} {'onset (event)':<10} {'page minute end':<16} {'event delay':>12} {'wall delay':>11} target"
    )
    for row in rows:
        print(
            f"{row['scenario']:<18} {str(row['onset'])[11:19]:<10} {str(row['page_minute_end'] or 'no page')[11:19]:<16} "
            f"{row['event_delay_s'] if row['event_delay_s'] is not None else 'n/a':>11}s "
            f"{row['wall_delay_s'] if row['wall_delay_s'] is not None else 'n/a':>10}s {row['target_s']:.0f}s"
        )
    print()
    return {
        "rate_requests_per_s": args.rate,
        "speed": args.speed,
        "history_min": args.history_min,
        "history_send_s": round(history_s, 1),
        "spans_sent": pacer.sent,
        "late_spans": int(str(late or 0)),
        "windowed_spans": int(str(windowed or 0)),
        "grace_s": args.grace_s if args.grace_s is not None else stack.settings.window_grace_s,
        "incidents": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=6.0, help="mean requests per second (default 6)")
    parser.add_argument("--history-min", type=float, default=62.0, help="minutes of history before live traffic")
    parser.add_argument("--lead-min", type=float, default=3.0, help="live minutes before each incident (default 3)")
    parser.add_argument("--incident-min", type=float, default=4.0, help="minutes each incident lasts (default 4)")
    parser.add_argument("--speed", type=float, default=1.0, help="event seconds per wall second (default 1: live)")
    parser.add_argument("--grace-s", type=float, default=None, help="SPANLINE_WINDOW_GRACE_S (default: the setting's)")
    parser.add_argument("--wait-s", type=float, default=120.0, help="longest wait for pages after the traffic")
    figures = asyncio.run(run(parser.parse_args()))
    publish("alert_delay", figures)


if __name__ == "__main__":
    main()
