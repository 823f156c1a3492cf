"""`spanline dashboards push`: upload the folder, the ClickHouse datasource and the dashboards
through Grafana's HTTP API (grafana-client), changing only what differs.

Idempotent by comparison, not by blind overwrite: each object is read first (GET by uid) and
written only when missing or different, so a second push issues no writes and reports every
object as unchanged. Dashboards are saved with ``overwrite: true`` into the folder by uid; the
datasource is created (POST) or updated by uid (PUT).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

from grafana_client.client import GrafanaClientError, GrafanaException
from rich.table import Table

from spanline.dashboards.clickhouse_query import DATASOURCE_UID, PLUGIN_TYPE
from spanline.dashboards.generate import DEFAULT_DATABASE, rendered
from spanline.errors import ConfigError, SpanlineError

FOLDER_UID, FOLDER_TITLE = "spanline", "Spanline"
#: Fields Grafana adds to a stored dashboard that the generated JSON does not carry.
SERVER_FIELDS = ("id", "version")
Action = Literal["created", "updated", "unchanged"]
#: A Grafana API object (JSON) as grafana-client returns it.
Json = dict[str, Any]


# The parts of grafana-client's GrafanaApi that a push uses (its methods are unannotated).
class FolderApi(Protocol):
    def get_folder(self, uid: str) -> Json: ...
    def create_folder(self, title: str, uid: str | None = None) -> Json: ...
    def update_folder(
        self, uid: str, title: str | None = None, version: int | None = None, overwrite: bool = False
    ) -> Json: ...


class DatasourceApi(Protocol):
    def get_datasource_by_uid(self, datasource_uid: str) -> Json: ...
    def create_datasource(self, datasource: Json) -> Json: ...
    def update_datasource_by_uid(self, datasource_uid: str, datasource: Json) -> Json: ...


class DashboardApi(Protocol):
    def get_dashboard(self, dashboard_uid: str) -> Json: ...
    def update_dashboard(self, dashboard: Json) -> Json: ...


class Grafana(Protocol):
    """What :func:`push` needs of ``grafana_client.GrafanaApi``."""

    @property
    def folder(self) -> FolderApi: ...
    @property
    def datasource(self) -> DatasourceApi: ...
    @property
    def dashboard(self) -> DashboardApi: ...


@dataclass(frozen=True)
class ClickHouseTarget:
    """Where Grafana's ClickHouse datasource connects, parsed from ``http(s)://user@host:port``."""

    host: str
    port: int
    secure: bool
    username: str
    database: str
    password: str | None

    @classmethod
    def from_url(cls, url: str, database: str, password: str | None) -> ClickHouseTarget:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"--clickhouse-url {url!r} must be http(s)://user@host[:port] as Grafana reaches it")
        if parsed.password:
            raise ConfigError("put the ClickHouse password in GRAFANA_CLICKHOUSE_PASSWORD, not in --clickhouse-url")
        secure = parsed.scheme == "https"
        return cls(
            parsed.hostname,
            parsed.port or (8443 if secure else 8123),
            secure,
            parsed.username or "grafana",
            database,
            password,
        )

    def datasource(self) -> dict[str, Any]:
        """The datasource body for POST /api/datasources and PUT /api/datasources/uid/:uid."""
        body: dict[str, Any] = {
            "uid": DATASOURCE_UID,
            "name": "Spanline ClickHouse",
            "type": PLUGIN_TYPE,
            "access": "proxy",
            "isDefault": False,
            "jsonData": {
                "host": self.host,
                "port": self.port,
                "protocol": "http",
                "secure": self.secure,
                "username": self.username,
                "defaultDatabase": self.database,
            },
        }
        if self.password is not None:
            body["secureJsonData"] = {"password": self.password}
        return body


@dataclass(frozen=True)
class PushResult:
    kind: str
    uid: str
    title: str
    action: Action


def push(api: Grafana, clickhouse: ClickHouseTarget, database: str = DEFAULT_DATABASE) -> list[PushResult]:
    """Folder, datasource, then every dashboard; what happened to each, in that order."""
    try:
        results = [_folder(api), _datasource(api, clickhouse)]
        for text in rendered(database).values():
            results.append(_dashboard(api, json.loads(text)))
    except GrafanaException as exc:
        raise SpanlineError(f"Grafana refused the push ({exc.status_code}): {exc.message}") from exc
    return results


def _get(call: Callable[[str], Json], uid: str) -> Json | None:
    """The object, or None when Grafana answers 404."""
    try:
        return call(uid)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise


def _folder(api: Grafana) -> PushResult:
    existing = _get(api.folder.get_folder, FOLDER_UID)
    if existing is None:
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        return PushResult("folder", FOLDER_UID, FOLDER_TITLE, "created")
    if existing.get("title") != FOLDER_TITLE:
        api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
        return PushResult("folder", FOLDER_UID, FOLDER_TITLE, "updated")
    return PushResult("folder", FOLDER_UID, FOLDER_TITLE, "unchanged")


def _datasource(api: Grafana, clickhouse: ClickHouseTarget) -> PushResult:
    wanted = clickhouse.datasource()
    existing = _get(api.datasource.get_datasource_by_uid, DATASOURCE_UID)
    if existing is None:
        if clickhouse.password is None:
            raise ConfigError(
                "creating the datasource needs the read-only user's password in GRAFANA_CLICKHOUSE_PASSWORD"
            )
        api.datasource.create_datasource(wanted)
        return PushResult("datasource", DATASOURCE_UID, wanted["name"], "created")
    same = all(existing.get(key) == wanted[key] for key in ("name", "type", "access"))
    same = same and all(existing.get("jsonData", {}).get(k) == v for k, v in wanted["jsonData"].items())
    # Grafana never returns secrets; a password is only (re)sent with a change it accompanies.
    if same:
        return PushResult("datasource", DATASOURCE_UID, wanted["name"], "unchanged")
    api.datasource.update_datasource_by_uid(DATASOURCE_UID, wanted)
    return PushResult("datasource", DATASOURCE_UID, wanted["name"], "updated")


def _dashboard(api: Grafana, dashboard: dict[str, Any]) -> PushResult:
    uid, title = dashboard["uid"], dashboard["title"]
    existing = _get(api.dashboard.get_dashboard, uid)
    if existing is not None:
        stored = {k: v for k, v in existing["dashboard"].items() if k not in SERVER_FIELDS}
        if stored == dashboard and existing.get("meta", {}).get("folderUid") == FOLDER_UID:
            return PushResult("dashboard", uid, title, "unchanged")
    api.dashboard.update_dashboard(
        {
            "dashboard": {**dashboard, "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "spanline dashboards push",
        }
    )
    return PushResult("dashboard", uid, title, "created" if existing is None else "updated")


def results_table(results: list[PushResult], url: str) -> Table:
    """What the push did, one row per object, with a count per action in the caption."""
    table = Table(title=f"Grafana push to {url}", title_justify="left")
    for column in ("kind", "uid", "title", "action"):
        table.add_column(column)
    for result in results:
        table.add_row(result.kind, result.uid, result.title, result.action)
    counts = {action: sum(r.action == action for r in results) for action in ("created", "updated", "unchanged")}
    table.caption = ", ".join(f"{n} {action}" for action, n in counts.items())
    return table
