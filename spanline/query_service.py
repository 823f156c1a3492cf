"""The query service of the embedded mode: chDB lets only one process open its data path, so
the worker that owns it answers the CLI's read-only SQL on its web port (``/spanline/query``,
token in ``<home>/service.json``) and reports its pipeline's figures (``/spanline/stats``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faust
import faust.web
import orjson
from aiohttp import web as aiohttp_web

from spanline.settings import Settings
from spanline.sql.queries import read_only_query
from spanline.sql.service_file import ServiceFile
from spanline.streams.pipeline import PipelineStats
from spanline.streams.sinks import ClickHouseSpanSink

log = logging.getLogger(__name__)


def serve_queries(
    app: faust.App, sink: ClickHouseSpanSink, settings: Settings, pipeline_stats: Callable[[], PipelineStats]
) -> None:
    """Expose read-only SQL for the CLI, since chDB lets only this process open the data path."""
    service = ServiceFile(settings.home)
    token = service.new_token()

    @app.page("/spanline/query")
    class Query(faust.web.View):
        async def post(self, request: Any) -> Any:
            if request.headers.get("Authorization") != f"Bearer {token}":
                return self.json({"error": "missing or wrong token (see <home>/service.json)"}, status=401)
            body = orjson.loads(await request.read())
            try:
                result = await sink.run(
                    sink.call,
                    lambda _: read_only_query(settings, body["sql"], body.get("parameters"), body.get("tenant")),
                )
            except Exception as exc:  # a bad query goes back to the CLI, never into the worker
                return self.json({"error": str(exc)}, status=400)
            payload = {"columns": result.columns, "rows": result.rows}
            return aiohttp_web.Response(
                body=orjson.dumps(payload, default=str, option=orjson.OPT_SERIALIZE_NUMPY),
                content_type="application/json",
            )

    @app.page("/spanline/stats")
    async def stats(web: Any, request: Any) -> Any:
        return web.json(pipeline_stats().__dict__)

    @app.task  # type: ignore[untyped-decorator]  # faust types App.task as a Union over bare Awaitable
    async def announce() -> None:
        service.write(query_url=f"http://127.0.0.1:{settings.worker_web_port}/spanline/query", token=token)
        log.info("serving read-only queries for the CLI on port %d", settings.worker_web_port)
