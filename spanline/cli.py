"""The `spanline` command line."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from spanline.errors import ConfigError, SpanlineError
from spanline.settings import Settings, load_settings
from spanline.traces.ranks import RANKS as TRACE_RANKS

if TYPE_CHECKING:
    from spanline.sql.queries import QueryResult

if TYPE_CHECKING:
    from spanline.streams.pricing.cli import PriceFiles

#: Wide enough for the summary tables when output is not a terminal (CI logs, pipes).
console = Console(width=shutil.get_terminal_size((140, 40)).columns)


def _settings() -> Settings:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return settings


def cmd_up(_: argparse.Namespace) -> None:
    from spanline.runtime import run_up

    run_up(_settings())


def cmd_worker(_: argparse.Namespace) -> None:
    from spanline.runtime import run_worker

    run_worker(_settings())


def cmd_collect(_: argparse.Namespace) -> None:
    from spanline.runtime import run_receiver

    run_receiver(_settings())


def cmd_migrate(args: argparse.Namespace) -> None:
    from spanline.sql.client import connect
    from spanline.sql.migrate import apply_migrations

    if args.cluster is not None:
        _print_cluster_migrations(args.cluster, args.print)
        return
    settings = _settings()
    client = connect(settings.resolved_clickhouse_url, password=settings.clickhouse_password)
    applied = apply_migrations(client, settings.clickhouse_database, settings.raw_ttl_days)
    console.print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else " (up to date)"))


def _print_cluster_migrations(cluster: str, print_only: bool) -> None:
    """The cluster DDL goes to a DBA's clickhouse-client, not through this process."""
    from spanline.sql.cluster import cluster_statements
    from spanline.sql.migrate import load_migrations

    if not print_only:
        raise SpanlineError(
            "--cluster only prints the DDL: run `spanline migrate --cluster NAME --print | clickhouse-client --multiquery`"
        )
    settings = load_settings()
    for statement in cluster_statements(
        load_migrations(), settings.clickhouse_database, settings.raw_ttl_days, cluster
    ):
        print(f"{statement};\n")


def cmd_simulate(args: argparse.Namespace) -> None:
    from spanline.simulator.scenarios import get_scenario
    from spanline.simulator.simulate import simulate

    minutes = args.hours * 60.0 if args.hours is not None else args.minutes
    report = simulate(
        _settings(),
        minutes=minutes,
        rate=args.rate,
        seed=args.seed,
        url=args.url,
        console=console,
        scenario=args.scenario,
        incident_at_min=args.incident_at,
        incident_minutes=args.incident_minutes,
    )
    console.print(
        f"sent {report.accepted:,} spans in {report.requests:,} requests "
        f"({report.rejected} rejected) in {report.seconds:.1f}s = {report.spans_per_s:,.0f} spans/s"
    )
    scenario = get_scenario(args.scenario)
    if not scenario.is_baseline:
        console.print(
            f"scenario {scenario.name}: {scenario.summary}; expect {scenario.expected_rule} "
            f"(runbook {scenario.expected_runbook}, branch {scenario.expected_branch})"
        )


def cmd_demo(args: argparse.Namespace) -> None:
    from spanline.demo import run_demo

    run_demo(_settings(), minutes=args.minutes, rate=args.rate, console=console)


def cmd_sql_query(args: argparse.Namespace) -> None:
    from spanline.analysis import formatted
    from spanline.sql.queries import run_query

    params = dict(_key_value(p) for p in args.param)
    _print(formatted(run_query(_settings(), args.sql, params, tenant=args.tenant), args.format))


def cmd_sql_list(_: argparse.Namespace) -> None:
    from spanline.analysis import library_table

    console.print(library_table())


def cmd_sql_show(args: argparse.Namespace) -> None:
    from spanline.analysis import query_source

    console.print(query_source(args.name, load_settings().clickhouse_database))


def cmd_sql_run(args: argparse.Namespace) -> None:
    from spanline.analysis import formatted, run_named

    result = run_named(_settings(), args.name, dict(_key_value(p) for p in args.param), tenant=args.tenant)
    _print(formatted(result, args.format, title=args.name))


def _print(output: object) -> None:
    """Tables through rich; CSV and JSON verbatim on stdout, so they can be piped."""
    if isinstance(output, str):
        print(output)
    else:
        console.print(output)


def cmd_alerts_validate(args: argparse.Namespace) -> None:
    from spanline.alerts.cli import validate

    console.print(validate(Path(args.rules) if args.rules else None, Path(args.contracts) if args.contracts else None))


def cmd_alerts_list(args: argparse.Namespace) -> None:
    from spanline.alerts.cli import rules_table

    console.print(rules_table(Path(args.rules) if args.rules else None))


def cmd_prices_show(args: argparse.Namespace) -> None:
    from spanline.streams.pricing.cli import parse_instant, show

    console.print(show(args.model, args.provider, parse_instant(args.at), args.tenant, _price_files()))


def cmd_prices_diff(_: argparse.Namespace) -> None:
    from spanline.streams.pricing.cli import diff

    console.print(diff(_price_files()))


def _price_files() -> PriceFiles:
    from spanline.streams.pricing.cli import PriceFiles

    settings = load_settings()
    return PriceFiles(overrides=settings.price_overrides_file, deployments=settings.model_deployments_file)


def cmd_dashboards_generate(args: argparse.Namespace) -> None:
    from spanline.dashboards.generate import GENERATED_DIR, write_generated

    paths = write_generated(Path(args.out) if args.out else GENERATED_DIR, args.database)
    console.print(f"wrote {len(paths)} dashboards to {paths[0].parent}")


def cmd_dashboards_push(args: argparse.Namespace) -> None:
    import os

    from grafana_client.api import GrafanaApi

    from spanline.dashboards.push import ClickHouseTarget, push, results_table

    target = ClickHouseTarget.from_url(
        args.clickhouse_url, args.database, os.environ.get("GRAFANA_CLICKHOUSE_PASSWORD")
    )
    results = push(GrafanaApi.from_url(args.url, credential=_grafana_token(args), timeout=30.0), target, args.database)
    console.print(results_table(results, args.url))


def _grafana_token(args: argparse.Namespace) -> str:
    """The token from --token-file or $GRAFANA_TOKEN: never from argv, where `ps` shows it."""
    import os

    token_file: Path | None = args.token_file
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the Grafana token file {token_file}: {exc}") from exc
    else:
        token = os.environ.get("GRAFANA_TOKEN", "").strip()
    if not token:
        raise ConfigError("no Grafana token: set GRAFANA_TOKEN or pass --token-file with a service-account token")
    return token


def cmd_report(args: argparse.Namespace) -> None:
    from spanline.dashboards.report import parse_duration, write_report

    out = Path(args.out)
    report = write_report(_settings(), parse_duration(args.since), out)
    console.print(f"wrote {report.panels} panels and {report.traces} trace waterfalls to {out.resolve()}")
    if report.failures:
        raise SpanlineError("panels that failed: " + "; ".join(f"{k}: {v}" for k, v in report.failures.items()))


def _trace_runner(settings: Settings, tenant: str | None) -> Callable[[str, dict[str, Any]], QueryResult]:
    """Trace queries through the CLI's read-only path, scoped to ``tenant`` like `sql query`."""
    from spanline.sql.queries import run_query

    def run(sql: str, parameters: dict[str, Any]) -> QueryResult:
        return run_query(settings, sql, parameters, tenant=tenant)

    return run


def cmd_trace(args: argparse.Namespace) -> None:
    from spanline.traces.fetch import fetch_trace
    from spanline.traces.links import grafana_trace_url
    from spanline.traces.terminal import waterfall

    settings = _settings()
    trace = fetch_trace(_trace_runner(settings, args.tenant), settings.clickhouse_database, args.trace_id)
    if trace is None:
        scope = f" for tenant {args.tenant}" if args.tenant else ""
        raise SpanlineError(
            f"no spans of trace {args.trace_id} are stored{scope}; `spanline traces --since 1h` lists recent traces"
        )
    console.print(waterfall(trace))
    console.print(f"Grafana: {grafana_trace_url(settings.grafana_url, trace.trace_id)}")


def cmd_traces(args: argparse.Namespace) -> None:
    from datetime import UTC, datetime

    from spanline.dashboards.report import parse_duration
    from spanline.traces.fetch import rank_traces
    from spanline.traces.terminal import ranked_table

    settings = _settings()
    rank, limit = next(((name, n) for name in TRACE_RANKS if (n := getattr(args, name)) is not None), ("slowest", 10))
    until = datetime.now(UTC)
    since = until - parse_duration(args.since)
    traces = rank_traces(
        _trace_runner(settings, args.tenant),
        settings.clickhouse_database,
        rank,
        since,
        until,
        limit=limit,
        scope={"tenant_id": args.tenant or "", "feature": args.feature or ""},
    )
    scope = "".join(
        f" · {name} {value}" for name, value in (("tenant", args.tenant), ("feature", args.feature)) if value
    )
    title = f"{limit} {rank} traces started in the last {args.since}{scope}"
    if not traces:
        console.print(f"{title}: none")
        return
    console.print(ranked_table(traces, rank, title))


def cmd_schema(args: argparse.Namespace) -> None:
    from spanline.contract.schema_export import write_schema

    path = write_schema(Path(args.out) if args.out else None)
    console.print(f"wrote {path}")


def cmd_reprice(args: argparse.Namespace) -> None:
    from spanline.streams.reprice_command import run_reprice

    run_reprice(
        _settings(),
        console,
        since=args.since,
        until=args.until,
        chunk_minutes=args.chunk_minutes,
        dry_run=args.dry_run,
    )


def cmd_evaluate_alerts(args: argparse.Namespace) -> None:
    """Replay simulated days per rate through the real evaluator; exit 1 when a target is missed."""
    from datetime import timedelta

    from rich.progress import Progress

    from spanline.alert_evaluation import (
        evaluate,
        false_page_list,
        false_page_table,
        incident_table,
        missed_incident_list,
    )

    rates = [_rate(text) for text in args.rates.split(",")]
    incidents = tuple(name for name in args.incidents.split(",") if name) if args.incidents else ()
    with Progress(console=Console(stderr=True), transient=True) as bar:
        tasks: dict[float, Any] = {}

        def progress(rate: float, done: int, total: int) -> None:
            if rate not in tasks:
                tasks[rate] = bar.add_task(f"{rate:g} req/s: event minutes", total=total)
            bar.update(tasks[rate], completed=done)

        try:
            scores = evaluate(
                rates,
                args.days,
                warmup_hours=args.warmup_hours,
                incidents=incidents,
                gap=timedelta(minutes=args.gap_minutes),
                seed=args.seed,
                progress=progress,
            )
        except ValueError as exc:
            raise SpanlineError(str(exc)) from None
    console.print(false_page_table(scores))
    if any(s.false_pages for s in scores):
        console.print(false_page_list(scores))
    console.print(incident_table(scores))
    if any(not i.met for s in scores for i in s.incidents):
        console.print(missed_incident_list(scores))
    for s in scores:
        console.print(f"{s.requests_per_s:g} req/s: {s.spans:,} spans, {s.days:.2f} days evaluated")
    missed = [s.requests_per_s for s in scores if not s.met]
    if missed:
        console.print(f"[red]targets missed at {', '.join(f'{r:g}' for r in missed)} req/s[/red]")
        sys.exit(1)
    console.print("[green]every target met: no false page, every incident paged once with its branch[/green]")


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise SpanlineError(f"--rates takes numbers separated by commas, got {text!r}") from None
    if not 0 < rate <= 1000:
        raise SpanlineError(f"a rate must be in (0, 1000] requests/s, got {text}")
    return rate


def cmd_tenant_salt(args: argparse.Namespace) -> None:
    """Print the tenant's user-id salt for the SDK's Kafka export; the master secret never leaves."""
    from spanline.contract.hashing import stored_master_secret, tenant_salt

    master = stored_master_secret(_settings(), create=True)
    assert master is not None  # create=True always yields a secret
    print(tenant_salt(master, args.tenant).hex())


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise SpanlineError(f"--param takes name=value, got {text!r}")
    return key, value


def _add_scenario_arguments(command: argparse.ArgumentParser) -> None:
    from spanline.simulator.scenarios import SCENARIOS

    command.add_argument(
        "--scenario",
        choices=list(SCENARIOS),
        default="baseline",
        help="baseline traffic plus one failure mode (default baseline)",
    )
    command.add_argument("--hours", type=float, default=None, help="simulated hours (instead of --minutes)")
    command.add_argument(
        "--incident-at",
        type=float,
        default=None,
        help="simulated minute the incident starts (default 60, or mid-run for shorter runs)",
    )
    command.add_argument(
        "--incident-minutes",
        type=float,
        default=None,
        help="how long the incident lasts, simulated minutes (default 20)",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="spanline", description="LLM observability and cost analytics pipeline.")
    sub = root.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run broker (embedded), receiver and worker until Ctrl-C").set_defaults(func=cmd_up)
    sub.add_parser("worker", help="run a stream-processing worker").set_defaults(func=cmd_worker)
    sub.add_parser("collect", help="run the HTTP receiver").set_defaults(func=cmd_collect)
    migrate = sub.add_parser("migrate", help="apply ClickHouse migrations")
    migrate.add_argument("--cluster", default=None, help="render the replicated + distributed DDL for this cluster")
    migrate.add_argument("--print", action="store_true", help="print the DDL instead of applying it")
    migrate.set_defaults(func=cmd_migrate)
    for name, helptext, func in (
        ("simulate", "send realistic simulated traffic through the receiver", cmd_simulate),
        ("demo", "up + simulate + summary, on the embedded default", cmd_demo),
    ):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("--minutes", type=float, default=10.0, help="simulated minutes of traffic (default 10)")
        command.add_argument("--rate", type=float, default=20.0, help="mean requests per simulated second (default 20)")
        command.set_defaults(func=func)
        if name == "simulate":
            command.add_argument("--seed", type=int, default=7)
            command.add_argument("--url", default=None, help="receiver URL (default: the configured collector)")
            _add_scenario_arguments(command)
    sql = sub.add_parser("sql", help="run SQL on ClickHouse").add_subparsers(dest="sql_command", required=True)
    query = sql.add_parser("query", help="ad-hoc read-only SQL")
    query.add_argument("sql")
    query.add_argument("--param", action="append", default=[], help="name=value for {name:Type} placeholders")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.add_argument("--tenant", default=None, help="see only this tenant's rows (enforced by ClickHouse)")
    query.set_defaults(func=cmd_sql_query)
    sql.add_parser("list", help="the named analysis queries and their parameters").set_defaults(func=cmd_sql_list)
    show = sql.add_parser("show", help="a named query's SQL")
    show.add_argument("name")
    show.set_defaults(func=cmd_sql_show)
    run = sql.add_parser("run", help="run a named analysis query")
    run.add_argument("name")
    run.add_argument("--param", action="append", default=[], help="name=value, e.g. since=2026-01-01 tenant=acme")
    run.add_argument("--format", choices=("table", "csv", "json"), default="table")
    run.add_argument("--tenant", default=None, help="see only this tenant's rows (enforced by ClickHouse)")
    run.set_defaults(func=cmd_sql_run)
    alerts = sub.add_parser("alerts", help="alert rules").add_subparsers(dest="alerts_command", required=True)
    validate = alerts.add_parser("validate", help="check the alert rules and contracts files")
    validate.add_argument("--rules", default=None, help="rules YAML (default: the bundled alerts/rules.yaml)")
    validate.add_argument("--contracts", default=None, help="contracts YAML (default: spanline/contracts.yaml)")
    validate.set_defaults(func=cmd_alerts_validate)
    listing = alerts.add_parser("list", help="the alert rules as a table")
    listing.add_argument("--rules", default=None, help="rules YAML (default: the bundled alerts/rules.yaml)")
    listing.set_defaults(func=cmd_alerts_list)
    prices = sub.add_parser("prices", help="the price table spans are priced with").add_subparsers(
        dest="prices_command", required=True
    )
    show_price = prices.add_parser("show", help="the price in force for a model at an instant, its entry and source")
    show_price.add_argument("model", help="model name as spans carry it (gpt-4o, openai/gpt-4o-2024-08-06, ...)")
    show_price.add_argument("--provider", default="", help="provider as spans carry it (default: inferred)")
    show_price.add_argument("--at", default="now", help="UTC instant, ISO 8601 (default: now)")
    show_price.add_argument("--tenant", default="", help="tenant, for its price overrides (default: none)")
    show_price.set_defaults(func=cmd_prices_show)
    prices.add_parser("diff", help="where the price corrections differ from the bundled catalog").set_defaults(
        func=cmd_prices_diff
    )
    dashboards = sub.add_parser("dashboards", help="Grafana dashboards as code").add_subparsers(
        dest="dashboards_command", required=True
    )
    generate = dashboards.add_parser("generate", help="write the dashboards' JSON (dashboards/generated)")
    generate.add_argument("--out", default=None, help="directory (default: dashboards/generated in the package)")
    generate.add_argument("--database", default="spanline", help="ClickHouse database the panels read")
    generate.set_defaults(func=cmd_dashboards_generate)
    push_cmd = dashboards.add_parser("push", help="upload folder, datasource and dashboards through Grafana's API")
    push_cmd.add_argument("--url", required=True, help="Grafana base URL, e.g. http://localhost:3000")
    push_cmd.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file holding the Grafana service-account token (Editor or Admin); default: $GRAFANA_TOKEN",
    )
    push_cmd.add_argument(
        "--clickhouse-url",
        default="http://grafana@clickhouse:8123",
        help="ClickHouse as Grafana reaches it, http(s)://user@host:port; the read-only user's "
        "password comes from GRAFANA_CLICKHOUSE_PASSWORD",
    )
    push_cmd.add_argument("--database", default="spanline", help="ClickHouse database the panels read")
    push_cmd.set_defaults(func=cmd_dashboards_push)
    report = sub.add_parser("report", help="the dashboards' panels as one self-contained HTML file")
    report.add_argument("--since", default="1h", help="window ending now: 30m, 1h, 7d (default 1h)")
    report.add_argument("--out", default="report.html", help="output file (default report.html)")
    report.set_defaults(func=cmd_report)
    reprice_cmd = sub.add_parser(
        "reprice", help="recompute stored spans' costs with the current prices; the rollups follow exactly once"
    )
    reprice_cmd.add_argument("--since", required=True, help="ISO date/time (UTC if naive) or a duration ago: 7d, 6h")
    reprice_cmd.add_argument("--until", default=None, help="same forms as --since (default: now)")
    reprice_cmd.add_argument(
        "--chunk-minutes",
        type=float,
        default=60.0,
        help="minutes of start_time read, priced and written per step (default 60)",
    )
    reprice_cmd.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    reprice_cmd.set_defaults(func=cmd_reprice)
    trace = sub.add_parser("trace", help="one trace as a waterfall: span tree, time bars, figures, critical path")
    trace.add_argument("trace_id")
    trace.add_argument("--tenant", default=None, help="see only this tenant's spans (enforced by ClickHouse)")
    trace.set_defaults(func=cmd_trace)
    traces = sub.add_parser("traces", help="the slowest, costliest, failed or retried traces of a window")
    traces.add_argument("--since", default="1h", help="window ending now: 30m, 1h, 7d (default 1h)")
    traces.add_argument("--tenant", default=None, help="only this tenant's traces (enforced by ClickHouse)")
    traces.add_argument("--feature", default=None, help="only traces of this feature")
    ranking = traces.add_mutually_exclusive_group()
    for name in TRACE_RANKS:
        ranking.add_argument(f"--{name}", type=int, metavar="N", default=None, help=f"the N {name} traces")
    traces.set_defaults(func=cmd_traces)
    schema = sub.add_parser("schema", help="export the span JSON Schema")
    schema.add_argument("--out", default=None)
    schema.set_defaults(func=cmd_schema)
    salt = sub.add_parser("tenant-salt", help="print a tenant's user-id salt (hex) for the SDK's Kafka export")
    salt.add_argument("tenant")
    salt.set_defaults(func=cmd_tenant_salt)
    evaluation = sub.add_parser(
        "evaluate-alerts",
        help="replay simulated days of independent traffic with incidents per rate through the real alert "
        "evaluator; print false pages per rule and detection per incident (exit 1 when a target is missed)",
    )
    evaluation.add_argument("--days", type=float, default=7.0, help="simulated days per rate (default 7)")
    evaluation.add_argument("--rates", default="0.5,5,50", help="mean requests/s, comma-separated (default 0.5,5,50)")
    evaluation.add_argument(
        "--incidents", default="", help="only these incident kinds, in this order, comma-separated (default: all)"
    )
    evaluation.add_argument(
        "--gap-minutes", type=float, default=50.0, help="event minutes between one incident's end and the next"
    )
    evaluation.add_argument(
        "--warmup-hours", type=float, default=6.0, help="first hours learnt as closed history, not evaluated"
    )
    evaluation.add_argument("--seed", type=int, default=1, help="traffic seed (default 1)")
    evaluation.set_defaults(func=cmd_evaluate_alerts)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except SpanlineError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
