"""``spanline reprice``: times from the command line, the run against the configured ClickHouse,
and the summary per model and day as a table."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.table import Table

from spanline.errors import ConfigError
from spanline.settings import Settings
from spanline.sql.client import connect
from spanline.sql.migrate import apply_migrations
from spanline.streams.pricing import PriceCatalog
from spanline.streams.reprice import Chunk, RepriceResult, reprice

_AGO = re.compile(r"(\d+(?:\.\d+)?)([mhd])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86_400}


def parse_time(text: str, option: str, now: datetime) -> datetime:
    """An ISO 8601 date or time (naive = UTC), or a duration before ``now`` such as ``90m``, ``6h``, ``7d``."""
    text = text.strip()
    if match := _AGO.fullmatch(text):
        return now - timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{option} takes an ISO 8601 date or time (2026-11-01, 2026-11-01T12:00Z) "
            f"or a duration before now (90m, 6h, 7d), got {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def run_reprice(
    settings: Settings,
    console: Console,
    *,
    since: str,
    until: str | None,
    chunk_minutes: float,
    dry_run: bool,
) -> RepriceResult:
    """Reprice ``[since, until)`` (until = now) with the configured catalog and print the summary."""
    now = datetime.now(UTC)
    start = parse_time(since, "--since", now)
    end = parse_time(until, "--until", now) if until is not None else now
    if end <= start:
        raise ConfigError(f"--until ({end.isoformat()}) must be after --since ({start.isoformat()})")
    if chunk_minutes <= 0:
        raise ConfigError(f"--chunk-minutes must be positive, got {chunk_minutes}")
    catalog = PriceCatalog.load(settings.price_overrides_file)
    client = connect(settings.resolved_clickhouse_url, password=settings.clickhouse_password)
    try:
        apply_migrations(client, settings.clickhouse_database, settings.raw_ttl_days)
        with console.status("repricing…") as status:

            def progress(chunk: Chunk, step: str) -> None:
                status.update(f"repricing: {chunk.since:%Y-%m-%d %H:%M} – {chunk.until:%H:%M} UTC {step}")

            result = reprice(
                client,
                settings.clickhouse_database,
                catalog,
                start,
                end,
                chunk=timedelta(minutes=chunk_minutes),
                dry_run=dry_run,
                after_step=progress,
            )
    finally:
        client.close()
    console.print(summary_table(result, start, end, dry_run))
    return result


def summary_table(result: RepriceResult, since: datetime, until: datetime, dry_run: bool) -> Table | str:
    """The changes per day and model, with totals; a sentence when nothing changed."""
    window = f"{since:%Y-%m-%d %H:%M} – {until:%Y-%m-%d %H:%M} UTC"
    summary = result.by_model_and_day()
    resumed = (
        f"; {result.resumed} span(s) rewritten that an interrupted run had already rolled up" if result.resumed else ""
    )
    if result.spans_read == 0:
        return f"nothing to reprice: no stored spans start in {window}"
    if summary.empty:
        return (
            f"nothing to reprice in {window}: all {result.spans_read:,} stored spans have their current price{resumed}"
        )
    verb = "would change" if dry_run else "changed"
    table = Table(
        title=f"Repriced {window}: {int(summary['spans'].sum())} of {result.spans_read} span(s) {verb}{resumed}"
        + (" (dry run: nothing written)" if dry_run else ""),
        title_justify="left",
    )
    for name, justify in (
        ("day", "left"),
        ("provider", "left"),
        ("model", "left"),
        ("spans", "right"),
        ("cost before (USD)", "right"),
        ("cost after (USD)", "right"),
        ("change (USD)", "right"),
        ("newly priced", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]  # rich types justify as a Literal
    for row in summary.itertuples(index=False):
        table.add_row(
            row.day,
            row.provider or "—",
            row.model or "—",
            f"{row.spans:,}",
            f"{row.cost_before:,.6f}",
            f"{row.cost_after:,.6f}",
            f"{row.delta:+,.6f}",
            f"{row.newly_priced:+,}" if row.newly_priced else "",
        )
    table.add_section()
    table.add_row(
        "total",
        "",
        "",
        f"{int(summary['spans'].sum()):,}",
        f"{summary['cost_before'].sum():,.6f}",
        f"{summary['cost_after'].sum():,.6f}",
        f"{summary['delta'].sum():+,.6f}",
        f"{int(summary['newly_priced'].sum()):+,}" if summary["newly_priced"].any() else "",
    )
    return table
