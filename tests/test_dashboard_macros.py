"""Macro and template-variable expansion, exactly as grafana-clickhouse-datasource does it
(frontend: applyConditionalAll + templateSrv with the plugin's formatter; backend: pkg/macros
through grafana/sqlds), checked string for string and then on chDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spanline.dashboards.macros import ALL, TimeRange, Variable, apply_conditional_all, expand, replace_variables
from spanline.errors import ConfigError
from spanline.sql.client import connect

START = datetime(2026, 11, 28, 23, 40, 0, 250000, tzinfo=UTC)
END = datetime(2026, 11, 29, 0, 10, 30, 999000, tzinfo=UTC)
RANGE = TimeRange(START, END, timedelta(seconds=30))
FROM_S, TO_S = int(START.timestamp()), int(END.timestamp())


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        ("$__timeFilter(start_time)", f"start_time >= toDateTime({FROM_S}) AND start_time <= toDateTime({TO_S})"),
        (
            "$__timeFilter_ms(ts)",
            f"ts >= fromUnixTimestamp64Milli({FROM_S * 1000 + 250}) AND "
            f"ts <= fromUnixTimestamp64Milli({TO_S * 1000 + 999})",
        ),
        ("$__dateFilter(day)", "day >= toDate('2026-11-28') AND day <= toDate('2026-11-29')"),
        ("$__fromTime AND $__toTime", f"toDateTime({FROM_S}) AND toDateTime({TO_S})"),
        ("$__fromTime_ms", f"fromUnixTimestamp64Milli({FROM_S * 1000 + 250})"),
        ("$__toTime_ms", f"fromUnixTimestamp64Milli({TO_S * 1000 + 999})"),
        ("$__timeInterval(minute)", "toStartOfInterval(toDateTime(minute), INTERVAL 30 second)"),
        ("$__timeInterval_ms(ts)", "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 30000 millisecond)"),
        ("$__interval_s", "30"),
        ("$__timeFilter( start_time )", f"start_time >= toDateTime({FROM_S}) AND start_time <= toDateTime({TO_S})"),
    ],
)
def test_backend_macros(sql: str, expanded: str) -> None:
    assert expand(sql, RANGE) == expanded


def test_interval_below_a_second_counts_as_one_second() -> None:
    assert expand("$__interval_s", TimeRange(START, END, timedelta(milliseconds=200))) == "1"


def test_timefilter_does_not_swallow_the_ms_variant() -> None:
    both = expand("$__timeFilter_ms(a) OR $__timeFilter(b)", RANGE)
    assert both.startswith("a >= fromUnixTimestamp64Milli(") and "b >= toDateTime(" in both


def test_conditional_all_drops_the_filter_for_all_and_empty() -> None:
    sql = "WHERE $__conditionalAll(tenant_id IN (${tenant:singlequote}), $tenant) AND x"
    assert apply_conditional_all(sql, {"tenant": Variable("tenant", [ALL], ["a", "b"])}) == "WHERE 1=1 AND x"
    assert apply_conditional_all(sql, {"tenant": Variable("tenant", "", ["a"])}) == "WHERE 1=1 AND x"
    kept = apply_conditional_all(sql, {"tenant": Variable("tenant", ["a"], ["a", "b"])})
    assert kept == "WHERE tenant_id IN (${tenant:singlequote}) AND x"
    braced = "$__conditionalAll(f IN (${feature}), ${feature})"
    assert apply_conditional_all(braced, {"feature": Variable("feature", [ALL])}) == "1=1"


def test_nested_brackets_and_several_macros() -> None:
    sql = (
        "$__conditionalAll(lower(tenant_id) IN (lower('x'), ${tenant:singlequote}), $tenant) AND "
        "$__conditionalAll(feature IN (${feature:singlequote}), $feature)"
    )
    variables = [Variable("tenant", ["acme"], ["acme"]), Variable("feature", [ALL], ["a"])]
    assert expand(sql, RANGE, variables) == "lower(tenant_id) IN (lower('x'), 'acme') AND 1=1"


def test_template_variables_format_like_grafana() -> None:
    variables = {
        "multi": Variable("multi", ["a", "b"]),
        "single": Variable("single", "plain"),
        "quote": Variable("quote", ["o'brien"]),
        "every": Variable("every", [ALL], ["x", "y", "z"]),
    }
    assert replace_variables("${multi:singlequote}", variables) == "'a','b'"
    assert replace_variables("$multi", variables) == "'a','b'"  # the plugin's formatter for arrays
    assert replace_variables("${single}", variables) == "plain"
    assert replace_variables("${single:singlequote}", variables) == "'plain'"
    assert replace_variables("${quote:singlequote}", variables) == "'o\\'brien'"
    assert replace_variables("${every:singlequote}", variables) == "'x','y','z'"
    assert replace_variables("$unknown stays", variables) == "$unknown stays"


def test_mistakes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown macro"):
        expand("$__timeGroup(t, 1m)", RANGE)
    with pytest.raises(ConfigError, match="expects 1 argument"):
        expand("$__timeFilter", RANGE)
    with pytest.raises(ConfigError, match="no closing bracket"):
        expand("$__timeFilter(t", RANGE)
    with pytest.raises(ConfigError, match="takes"):
        expand("$__conditionalAll(x)", RANGE)
    with pytest.raises(ConfigError, match="before"):
        TimeRange(END, START)


def test_expanded_filters_select_the_right_rows_on_chdb(tmp_path) -> None:
    client = connect(f"chdb://{tmp_path / 'chdb'}")
    try:
        sql = expand(
            "SELECT count() FROM (SELECT toDateTime64('2026-11-28 23:40:00.250', 3, 'UTC') + toIntervalSecond(number) AS t, "
            "['acme', 'globex', 'o''brien'][number % 3 + 1] AS tenant_id FROM numbers(3600)) "
            "WHERE $__timeFilter_ms(t) AND $__conditionalAll(tenant_id IN (${tenant:singlequote}), $tenant)",
            RANGE,
            [Variable("tenant", ["acme", "o'brien"], ["acme", "globex", "o'brien"])],
        )
        seconds = int((END - START).total_seconds()) + 1  # both ends inclusive
        expected = sum(1 for n in range(seconds) if n % 3 != 1)
        assert client.query(sql).result_rows[0][0] == expected
        buckets = expand(
            "SELECT count(DISTINCT $__timeInterval(t)) FROM (SELECT now() - number AS t FROM numbers(600))", RANGE
        )
        assert client.query(buckets).result_rows[0][0] in (20, 21)
    finally:
        client.close()
