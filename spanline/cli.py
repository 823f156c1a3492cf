"""The `spanline` command line."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from rich.console import Console

from spanline.errors import SpanlineError
from spanline.settings import Settings, load_settings

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


def cmd_migrate(_: argparse.Namespace) -> None:
    from spanline.sql.client import connect
    from spanline.sql.migrate import apply_migrations

    settings = _settings()
    client = connect(settings.resolved_clickhouse_url, password=settings.clickhouse_password)
    applied = apply_migrations(client, settings.clickhouse_database, settings.raw_ttl_days)
    console.print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else " (up to date)"))


def cmd_simulate(args: argparse.Namespace) -> None:
    from spanline.simulate import simulate

    report = simulate(_settings(), minutes=args.minutes, rate=args.rate, seed=args.seed, url=args.url, console=console)
    console.print(
        f"sent {report.accepted:,} spans in {report.requests:,} requests "
        f"({report.rejected} rejected) in {report.seconds:.1f}s = {report.spans_per_s:,.0f} spans/s"
    )


def cmd_demo(args: argparse.Namespace) -> None:
    from spanline.demo import run_demo

    run_demo(_settings(), minutes=args.minutes, rate=args.rate, console=console)


def cmd_sql_query(args: argparse.Namespace) -> None:
    from spanline.analysis import formatted
    from spanline.queries import run_query

    params = dict(_key_value(p) for p in args.param)
    _print(formatted(run_query(_settings(), args.sql, params), args.format))


def cmd_sql_list(_: argparse.Namespace) -> None:
    from spanline.analysis import library_table

    console.print(library_table())


def cmd_sql_show(args: argparse.Namespace) -> None:
    from spanline.analysis import query_source

    console.print(query_source(args.name, load_settings().clickhouse_database))


def cmd_sql_run(args: argparse.Namespace) -> None:
    from spanline.analysis import formatted, run_named

    result = run_named(_settings(), args.name, dict(_key_value(p) for p in args.param))
    _print(formatted(result, args.format, title=args.name))


def _print(output: object) -> None:
    """Tables through rich; CSV and JSON verbatim on stdout, so they can be piped."""
    if isinstance(output, str):
        print(output)
    else:
        console.print(output)


def cmd_schema(args: argparse.Namespace) -> None:
    from spanline.collectors.schema_export import write_schema

    path = write_schema(Path(args.out) if args.out else None)
    console.print(f"wrote {path}")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise SpanlineError(f"--param takes name=value, got {text!r}")
    return key, value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="spanline", description="LLM observability and cost analytics pipeline.")
    sub = root.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run broker (embedded), receiver and worker until Ctrl-C").set_defaults(func=cmd_up)
    sub.add_parser("worker", help="run a stream-processing worker").set_defaults(func=cmd_worker)
    sub.add_parser("collect", help="run the HTTP receiver").set_defaults(func=cmd_collect)
    sub.add_parser("migrate", help="apply ClickHouse migrations").set_defaults(func=cmd_migrate)
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
    sql = sub.add_parser("sql", help="run SQL on ClickHouse").add_subparsers(dest="sql_command", required=True)
    query = sql.add_parser("query", help="ad-hoc read-only SQL")
    query.add_argument("sql")
    query.add_argument("--param", action="append", default=[], help="name=value for {name:Type} placeholders")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.set_defaults(func=cmd_sql_query)
    sql.add_parser("list", help="the named analysis queries and their parameters").set_defaults(func=cmd_sql_list)
    show = sql.add_parser("show", help="a named query's SQL")
    show.add_argument("name")
    show.set_defaults(func=cmd_sql_show)
    run = sql.add_parser("run", help="run a named analysis query")
    run.add_argument("name")
    run.add_argument("--param", action="append", default=[], help="name=value, e.g. since=2026-01-01 tenant=acme")
    run.add_argument("--format", choices=("table", "csv", "json"), default="table")
    run.set_defaults(func=cmd_sql_run)
    schema = sub.add_parser("schema", help="export the span JSON Schema")
    schema.add_argument("--out", default=None)
    schema.set_defaults(func=cmd_schema)
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
