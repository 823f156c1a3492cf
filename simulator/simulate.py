"""`spanline simulate`: realistic traffic through the real receiver, with progress."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from spanline.api_keys import api_keys_path, read_keys_file
from spanline.errors import ConfigError
from spanline.settings import Settings
from spanline.simulator.scenarios import DEFAULT_INCIDENT_AT_MIN, DEFAULT_INCIDENT_MINUTES, get_scenario
from spanline.simulator.sender import SendReport, send_chunks
from spanline.simulator.workload import generate_traces


def simulate(
    settings: Settings,
    *,
    minutes: float,
    rate: float,
    seed: int = 7,
    url: str | None = None,
    console: Console | None = None,
    end: datetime | None = None,
    scenario: str = "baseline",
    incident_at_min: float | None = None,
    incident_minutes: float | None = None,
) -> SendReport:
    """Replay ``minutes`` of simulated traffic ending now (time-accelerated: sent as fast as accepted).

    ``scenario`` injects one failure mode (see :mod:`spanline.simulator.scenarios`) from
    ``incident_at_min`` for ``incident_minutes`` of simulated time; event timestamps span the
    simulated time, so an hour of traffic with its incident arrives in seconds.
    """
    keys_file = api_keys_path(settings)
    secrets = read_keys_file(keys_file) if keys_file.exists() else {}
    secrets.update(settings.api_keys)
    keys = {tenant: key.get_secret_value() for tenant, key in secrets.items()}
    if not keys:
        raise ConfigError(f"no API keys to send with: run `spanline up` first (it writes {keys_file})")
    duration_s = minutes * 60
    finish = end or datetime.now(UTC)
    at, length = incident_window(minutes, incident_at_min, incident_minutes)
    try:
        config = get_scenario(scenario).workload(
            start=finish - timedelta(seconds=duration_s),
            hours=minutes / 60.0,
            requests_per_s=rate,
            seed=seed,
            tenants=tuple(sorted(keys)),
            incident_at_min=at,
            incident_minutes=length,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    target = url or f"http://{settings.collector_host}:{settings.collector_port}"
    with Progress(
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.fields[spans]:,} spans accepted"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("send", total=None, spans=0)
        return asyncio.run(
            send_chunks(
                target, keys, generate_traces(config), on_progress=lambda r: progress.update(task, spans=r.accepted)
            )
        )


def incident_window(minutes: float, at_min: float | None, length_min: float | None) -> tuple[float, float]:
    """Where the incident sits when not given: at the default minute (or mid-run for short runs),
    lasting the default length or until the run ends."""
    at = at_min if at_min is not None else min(DEFAULT_INCIDENT_AT_MIN, minutes / 2.0)
    length = length_min if length_min is not None else min(DEFAULT_INCIDENT_MINUTES, minutes - at)
    return at, length
