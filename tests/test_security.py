"""Security end to end, on a real stack (receiver and worker processes, tansu, chDB):
API keys required, a key writes only as its own tenant, user ids never stored raw, content
redacted, `spanline sql --tenant` scoped through the worker's query API, secrets never logged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from spanline.contract.hashing import hash_user_id, tenant_salt
from tests.support.kafka_broker import TansuBroker
from tests.support.stack import TENANT_KEYS, Stack

pytestmark = pytest.mark.e2e

SALT = "salt-secret-7f3a9c"
PASSWORD = "clickhouse-secret-91b2"
SECRETS = (*TENANT_KEYS.values(), SALT, PASSWORD)
RUN = f"sec-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def stack(tansu_kafka: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tansu_kafka.bootstrap_servers, tmp_path_factory.mktemp("security"), partitions=2)
    stack.env |= {
        "SPANLINE_USER_ID_SALT": SALT,
        "SPANLINE_CLICKHOUSE_PASSWORD": PASSWORD,
        "SPANLINE_LOG_LEVEL": "DEBUG",
    }
    stack.start_worker()
    stack.start_receiver()
    yield stack
    stack.close()


def span(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "span_id": f"{RUN}-{n}",
        "trace_id": f"{RUN}-t{n}",
        "service": RUN,
        "kind": "llm",
        "provider": "openai",
        "model_requested": "gpt-4o",
        "start_time": "2026-11-22T10:00:00Z",
        "duration_ms": 30,
        **fields,
    }


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANLINE_")} | stack.env
    return subprocess.run(
        [sys.executable, "-m", "spanline", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_writes_need_a_known_key(stack: Stack) -> None:
    body = orjson.dumps([span(0)])
    assert stack.post("/v1/spans", body, key=None)[0] == 401
    assert stack.post("/v1/spans", body, key="not-a-key")[0] == 403
    assert stack.post("/v1/traces", b"{}", key=None)[0] == 401
    status, _ = stack.post("/v1/spans", body, key="")
    assert status == 401


def test_a_key_writes_only_as_its_tenant_with_hashed_users_and_redacted_content(stack: Stack) -> None:
    acme, globex = TENANT_KEYS["acme"], TENANT_KEYS["globex"]
    content = "mail bob@example.com, key sk-abcdefghijklmnopqrstuvwx"
    status, _ = stack.post(
        "/v1/spans",
        orjson.dumps(
            [span(1, tenant_id="globex", user_id="alice@example.com", content=content), span(2, tenant_id="globex")]
        ),
        key=acme,
    )
    assert status == 200
    assert stack.post("/v1/spans", orjson.dumps([span(3, user_id="alice@example.com")]), key=globex)[0] == 200
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 3, s=RUN)

    rows = stack.query(
        "SELECT span_id, tenant_id, user_id_hash, content FROM {db}.spans WHERE service = {s:String} ORDER BY span_id",
        s=RUN,
    ).rows
    assert [(r[0], r[1]) for r in rows] == [(f"{RUN}-1", "acme"), (f"{RUN}-2", "acme"), (f"{RUN}-3", "globex")]
    assert rows[0][2] == hash_user_id(tenant_salt(SALT.encode(), "acme"), "alice@example.com")
    assert rows[2][2] == hash_user_id(tenant_salt(SALT.encode(), "globex"), "alice@example.com")
    assert rows[0][2] != rows[2][2]  # one person, unrelated hashes in two tenants
    assert rows[0][3] == "mail [REDACTED], key [REDACTED]"
    everything = orjson.dumps(
        stack.query("SELECT * FROM {db}.spans WHERE service = {s:String}", s=RUN).rows, default=str
    ).decode()
    assert "alice" not in everything and "bob@example.com" not in everything and "sk-abc" not in everything


def test_sql_tenant_scope_holds_through_the_worker_query_api(stack: Stack) -> None:
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 3, s=RUN)
    db = stack.settings.clickhouse_database
    query = f"SELECT tenant_id, count() FROM {db}.spans WHERE service = {{s:String}} GROUP BY tenant_id"
    for tenant, expected in (
        ("acme", [{"tenant_id": "acme", "count()": 2}]),
        ("globex", [{"tenant_id": "globex", "count()": 1}]),
        ("nobody", []),
    ):
        result = cli(stack, "sql", "query", query, "--param", f"s={RUN}", "--tenant", tenant, "--format", "json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert orjson.loads(result.stdout) == expected
    escape = cli(stack, "sql", "query", f"SELECT count() FROM merge('{db}', '^spans$')", "--tenant", "acme")
    assert escape.returncode == 2 and "table function merge()" in escape.stdout
    override = cli(
        stack,
        "sql",
        "query",
        f"SELECT count() FROM {db}.spans SETTINGS additional_table_filters = {{}}",
        "--tenant",
        "acme",
    )
    assert override.returncode == 2 and "readonly" in override.stdout.lower()
    named = cli(
        stack, "sql", "run", "spend_by_day", "--param", "since=2026-11-01", "--tenant", "globex", "--format", "json"
    )
    assert named.returncode == 0, named.stdout + named.stderr
    assert {record["tenant_id"] for record in orjson.loads(named.stdout)} == {"globex"}
    # the worker's own connection is untouched by the read-only scoped sessions: it still stores
    assert stack.post("/v1/spans", orjson.dumps([span(4)]), key=TENANT_KEYS["acme"])[0] == 200
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 4, s=RUN)


def test_secrets_never_reach_the_logs(stack: Stack) -> None:
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 3, s=RUN)
    logs = {name: (stack.home / name).read_text(errors="replace") for name in ("worker.log", "receiver.log")}
    assert all(len(text) > 100 for text in logs.values()), "the processes logged at DEBUG"
    for name, text in logs.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret appears in {name}"
