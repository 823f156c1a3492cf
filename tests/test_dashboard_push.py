"""`spanline dashboards push` against a loopback Grafana API contract server.

No Grafana runs here, so an aiohttp server stands in for it and checks every request against
Grafana's documented HTTP API (folders, data sources, dashboards: paths, methods, bearer auth,
JSON content type, required and allowed payload fields, the dashboard overwrite/version rule),
keeping what was written in memory so reads reflect earlier writes like the real server.
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from grafana_client import GrafanaApi

from spanline.dashboards.generate import rendered
from spanline.dashboards.push import ClickHouseTarget, push
from spanline.errors import SpanlineError
from tests.support.stack import free_port

TOKEN = "glsa_test_token"
FOLDER_FIELDS = {"uid", "title", "parentUid", "description"}
DATASOURCE_FIELDS = {
    "uid",
    "name",
    "type",
    "access",
    "url",
    "user",
    "database",
    "basicAuth",
    "basicAuthUser",
    "withCredentials",
    "isDefault",
    "jsonData",
    "secureJsonData",
    "version",
}
SAVE_DASHBOARD_FIELDS = {"dashboard", "folderId", "folderUid", "message", "overwrite"}


class GrafanaContract:
    """Grafana's /api/folders, /api/datasources and /api/dashboards as documented, in memory."""

    def __init__(self) -> None:
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self._next_id = 1

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._checks])
        app.router.add_get("/api/folders/{uid}", self.get_folder)
        app.router.add_post("/api/folders", self.create_folder)
        app.router.add_put("/api/folders/{uid}", self.update_folder)
        app.router.add_get("/api/datasources/uid/{uid}", self.get_datasource)
        app.router.add_post("/api/datasources", self.create_datasource)
        app.router.add_put("/api/datasources/uid/{uid}", self.update_datasource)
        app.router.add_get("/api/dashboards/uid/{uid}", self.get_dashboard)
        app.router.add_post("/api/dashboards/db", self.save_dashboard)
        return app

    @web.middleware
    async def _checks(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        if request.method in ("POST", "PUT") and request.content_type != "application/json":
            return self._violation(f"{request.method} {request.path} without a JSON body")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self._violation(f"{request.method} {request.path} is not a documented endpoint", 404)

    def _violation(self, what: str, status: int = 400) -> web.Response:
        self.violations.append(what)
        return web.json_response({"message": what}, status=status)

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _body(self, request: web.Request, allowed: set[str], required: set[str]) -> dict[str, Any] | web.Response:
        body = await request.json()
        if not isinstance(body, dict):
            return self._violation(f"{request.path}: body must be a JSON object")
        unknown, missing = body.keys() - allowed, required - body.keys()
        if unknown or missing:
            return self._violation(f"{request.path}: unknown fields {sorted(unknown)}, missing {sorted(missing)}")
        if "uid" in body and (not isinstance(body["uid"], str) or len(body["uid"]) > 40):
            return self._violation(f"{request.path}: uid must be a string of at most 40 characters")
        return body

    async def get_folder(self, request: web.Request) -> web.Response:
        folder = self.folders.get(request.match_info["uid"])
        return web.json_response(folder or {"message": "folder not found"}, status=200 if folder else 404)

    async def create_folder(self, request: web.Request) -> web.Response:
        body = await self._body(request, FOLDER_FIELDS, {"title"})
        if isinstance(body, web.Response):
            return body
        if body.get("uid") in self.folders:
            return web.json_response({"message": "a folder with the same uid already exists"}, status=409)
        folder = {"id": self._id(), "uid": body.get("uid", f"f{self._next_id}"), "title": body["title"], "version": 1}
        self.folders[folder["uid"]] = folder
        return web.json_response(folder)

    async def update_folder(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"title", "description", "version", "overwrite", "uid"}, {"title"})
        if isinstance(body, web.Response):
            return body
        folder = self.folders.get(request.match_info["uid"])
        if folder is None:
            return web.json_response({"message": "folder not found"}, status=404)
        if not body.get("overwrite") and body.get("version") != folder["version"]:
            return web.json_response({"message": "the folder has been changed by someone else"}, status=412)
        folder.update(title=body["title"], version=folder["version"] + 1)
        return web.json_response(folder)

    async def get_datasource(self, request: web.Request) -> web.Response:
        stored = self.datasources.get(request.match_info["uid"])
        if stored is None:
            return web.json_response({"message": "Data source not found"}, status=404)
        public = {k: v for k, v in stored.items() if k != "secureJsonData"}  # secrets never come back
        public["secureJsonFields"] = {name: True for name in stored.get("secureJsonData", {})}
        return web.json_response(public)

    def _valid_datasource(self, body: dict[str, Any]) -> str | None:
        if body["access"] not in ("proxy", "direct"):
            return "access must be proxy or direct"
        if not all(isinstance(body[k], str) and body[k] for k in ("name", "type")):
            return "name and type must be non-empty strings"
        return None

    async def create_datasource(self, request: web.Request) -> web.Response:
        body = await self._body(request, DATASOURCE_FIELDS, {"name", "type", "access"})
        if isinstance(body, web.Response):
            return body
        if problem := self._valid_datasource(body):
            return self._violation(problem)
        if body.get("uid") in self.datasources:
            return web.json_response({"message": "data source with the same uid already exists"}, status=409)
        stored = {**body, "id": self._id(), "version": 1}
        self.datasources[stored["uid"]] = stored
        return web.json_response(
            {"datasource": stored, "id": stored["id"], "message": "Datasource added", "name": stored["name"]}
        )

    async def update_datasource(self, request: web.Request) -> web.Response:
        body = await self._body(request, DATASOURCE_FIELDS, {"name", "type", "access"})
        if isinstance(body, web.Response):
            return body
        if problem := self._valid_datasource(body):
            return self._violation(problem)
        stored = self.datasources.get(request.match_info["uid"])
        if stored is None:
            return web.json_response({"message": "Data source not found"}, status=404)
        secrets = body.get("secureJsonData", stored.get("secureJsonData", {}))
        stored.update({**body, "secureJsonData": secrets, "version": stored["version"] + 1})
        return web.json_response(
            {"datasource": stored, "id": stored["id"], "message": "Datasource updated", "name": stored["name"]}
        )

    async def get_dashboard(self, request: web.Request) -> web.Response:
        stored = self.dashboards.get(request.match_info["uid"])
        if stored is None:
            return web.json_response({"message": "Dashboard not found"}, status=404)
        return web.json_response(copy.deepcopy(stored))

    async def save_dashboard(self, request: web.Request) -> web.Response:
        body = await self._body(request, SAVE_DASHBOARD_FIELDS, {"dashboard"})
        if isinstance(body, web.Response):
            return body
        dashboard = body["dashboard"]
        if not isinstance(dashboard, dict) or not dashboard.get("title"):
            return self._violation("dashboard.title is required")
        if "folderUid" in body and body["folderUid"] not in self.folders:
            return web.json_response({"message": "folder not found"}, status=400)
        uid = dashboard.get("uid") or f"d{self._next_id}"
        existing = self.dashboards.get(uid)
        if existing and not body.get("overwrite") and dashboard.get("id") != existing["dashboard"]["id"]:
            return web.json_response(
                {"status": "name-exists", "message": "dashboard with the same uid exists"}, status=412
            )
        version = existing["dashboard"]["version"] + 1 if existing else 1
        dashboard_id = existing["dashboard"]["id"] if existing else self._id()
        saved = {**dashboard, "uid": uid, "id": dashboard_id, "version": version}
        self.dashboards[uid] = {
            "dashboard": saved,
            "meta": {"folderUid": body.get("folderUid", ""), "provisioned": False, "version": version},
        }
        return web.json_response(
            {"id": dashboard_id, "uid": uid, "url": f"/d/{uid}", "status": "success", "version": version, "slug": uid}
        )


@pytest.fixture()
def grafana() -> Iterator[tuple[GrafanaContract, str]]:
    contract, port = GrafanaContract(), free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(contract.app())
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield contract, f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


TARGET = ClickHouseTarget.from_url("http://grafana@clickhouse:8123", "spanline", "reader-secret")


def writes(contract: GrafanaContract, since: int = 0) -> list[tuple[str, str]]:
    return [r for r in contract.requests[since:] if r[0] in ("POST", "PUT", "DELETE")]


def test_push_creates_everything_then_changes_nothing(grafana: tuple[GrafanaContract, str]) -> None:
    contract, url = grafana
    api = GrafanaApi.from_url(url, credential=TOKEN)
    first = push(api, TARGET)
    assert [(r.kind, r.action) for r in first] == [("folder", "created"), ("datasource", "created")] + [
        ("dashboard", "created")
    ] * len(rendered())
    assert contract.violations == []
    assert contract.folders["spanline"]["title"] == "Spanline"
    datasource = contract.datasources["spanline-clickhouse"]
    assert datasource["type"] == "grafana-clickhouse-datasource" and datasource["jsonData"]["username"] == "grafana"
    assert datasource["secureJsonData"] == {"password": "reader-secret"}
    generated = {name.removesuffix(".json") for name in rendered()}
    assert set(contract.dashboards) == generated
    assert all(d["meta"]["folderUid"] == "spanline" for d in contract.dashboards.values())

    before = len(contract.requests)
    second = push(api, TARGET)
    assert {r.action for r in second} == {"unchanged"} and len(second) == 2 + len(rendered())
    assert writes(contract, before) == [] and contract.violations == []


def test_push_repairs_only_what_drifted(grafana: tuple[GrafanaContract, str]) -> None:
    contract, url = grafana
    api = GrafanaApi.from_url(url, credential=TOKEN)
    push(api, TARGET)
    contract.dashboards["spanline-oncall"]["dashboard"]["title"] = "edited in the UI"
    moved = ClickHouseTarget.from_url("https://grafana@clickhouse.internal:8443", "spanline", None)
    before = len(contract.requests)
    results = {(r.kind, r.uid): r.action for r in push(api, moved)}
    assert results[("dashboard", "spanline-oncall")] == "updated"
    assert results[("datasource", "spanline-clickhouse")] == "updated"
    assert sum(action != "unchanged" for action in results.values()) == 2
    assert writes(contract, before) == [
        ("PUT", "/api/datasources/uid/spanline-clickhouse"),
        ("POST", "/api/dashboards/db"),
    ]
    assert contract.dashboards["spanline-oncall"]["dashboard"]["title"] == "Spanline / On-call"
    stored = contract.datasources["spanline-clickhouse"]
    assert stored["jsonData"]["secure"] is True and stored["jsonData"]["port"] == 8443
    assert stored["secureJsonData"] == {"password": "reader-secret"}  # kept: no new password was given
    assert contract.violations == []


def test_a_rejected_token_is_a_clear_error(grafana: tuple[GrafanaContract, str]) -> None:
    contract, url = grafana
    with pytest.raises(SpanlineError, match="401"):
        push(GrafanaApi.from_url(url, credential="wrong"), TARGET)
    assert contract.folders == {}


def test_cli_push_prints_what_it_did(grafana: tuple[GrafanaContract, str]) -> None:
    contract, url = grafana
    env = {**os.environ, "GRAFANA_CLICKHOUSE_PASSWORD": "reader-secret", "GRAFANA_TOKEN": TOKEN}
    command = [
        sys.executable,
        "-m",
        "spanline.cli",
        "dashboards",
        "push",
        "--url",
        url,
        "--clickhouse-url",
        "http://grafana@clickhouse:8123",
    ]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr + first.stdout
    assert (
        f"{2 + len(rendered())} created, 0 updated, 0 unchanged" in first.stdout
        and "Spanline / Cost analysis" in first.stdout
    )
    assert sorted(contract.dashboards) == sorted(name.removesuffix(".json") for name in rendered())
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and f"0 created, 0 updated, {2 + len(rendered())} unchanged" in second.stdout, (
        second.stdout
    )
    assert contract.violations == []
