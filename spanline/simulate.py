"""`spanline simulate`: realistic traffic through the real receiver, with progress."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from spanline.collectors.receiver.auth import read_keys_file
from spanline.collectors.receiver.server import api_keys_path
from spanline.collectors.sender import SendReport, send_chunks
from spanline.collectors.workload import WorkloadConfig, generate_traces
from spanline.errors import ConfigError
from spanline.settings import Settings


def simulate(
    settings: Settings, *, minutes: float, rate: float, seed: int = 7, url: str | None = None,
    console: Console | None = None, end: datetime | None = None,
) -> SendReport:
    """Replay ``minutes`` of simulated traffic ending now (time-accelerated: sent as fast as accepted)."""
    keys_file = api_keys_path(settings)
    secrets = read_keys_file(keys_file) if keys_file.exists() else {}
    secrets.update(settings.api_keys)
    keys = {tenant: key.get_secret_value() for tenant, key in secrets.items()}
    if not keys:
        raise ConfigError(f"no API keys to send with: run `spanline up` first (it writes {keys_file})")
    duration_s = minutes * 60
    finish = end or datetime.now(timezone.utc)
    config = WorkloadConfig(
        seed=seed, start=finish - timedelta(seconds=duration_s), duration_s=duration_s,
        requests_per_s=rate, tenants=tuple(sorted(keys)),
    )
    target = url or f"http://{settings.collector_host}:{settings.collector_port}"
    with Progress(
        TextColumn("simulating"), BarColumn(), TextColumn("{task.fields[spans]:,} spans accepted"),
        TimeElapsedColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task("send", total=None, spans=0)
        return asyncio.run(
            send_chunks(target, keys, generate_traces(config),
                        on_progress=lambda r: progress.update(task, spans=r.accepted))
        )
