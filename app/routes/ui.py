"""GET /ui: the web view, and GET /ui/alerts its Alerts page (static files in app/ui/, no build step). The
pages hold no data and no secret: they ask the API for everything, with the read key the user gives it (kept in the tab's sessionStorage)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

FILES = Path(__file__).parent.parent / "ui"
PREFIX = "/ui"


def mount(app: FastAPI) -> APIRouter:
    api = APIRouter()

    @api.get(PREFIX, include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(FILES / "index.html", media_type="text/html")

    @api.get(f"{PREFIX}/alerts", include_in_schema=False)
    async def alerts_page() -> FileResponse:
        return FileResponse(FILES / "alerts.html", media_type="text/html")

    app.mount(f"{PREFIX}/assets", StaticFiles(directory=FILES), name="ui-assets")
    return api
