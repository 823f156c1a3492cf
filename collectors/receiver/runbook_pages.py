"""``/runbooks/<name>``: the runbooks pages link to, rendered to HTML by the core (spanline/runbooks.py)."""

from __future__ import annotations

from aiohttp import web

from spanline.runbooks import UnknownRunbook, index_html, runbook_html, runbook_names

PREFIX = "/runbooks/"


async def runbook(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        page = runbook_html(name)
    except UnknownRunbook:
        raise web.HTTPNotFound(
            text=f"no runbook {name!r}; the runbooks are: {', '.join(runbook_names())}", content_type="text/plain"
        ) from None
    return web.Response(text=page, content_type="text/html")


async def index(_: web.Request) -> web.Response:
    return web.Response(text=index_html(PREFIX), content_type="text/html")


def add_runbook_routes(app: web.Application) -> None:
    app.router.add_get("/runbooks", index)
    app.router.add_get(PREFIX, index)
    app.router.add_get(PREFIX + "{name}", runbook)
