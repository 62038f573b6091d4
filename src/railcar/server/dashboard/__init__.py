"""The operators' dashboard: static HTML, CSS and JavaScript modules shipped as package data
(``static/``), served at ``/dashboard/`` by the update server itself (ADR 0013).

The page holds no secrets and needs no build step: it asks for an API token, keeps it in the
tab's sessionStorage and reads everything through the ``/api/`` endpoints. The files are read
once when the app is made; a strict Content-Security-Policy keeps the page on this origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.responses import RedirectResponse, Response

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
# Everything from this origin only; no inline script, no framing, no plugins.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


def load_assets() -> dict[str, Asset]:
    """The dashboard's files by name (a flat directory; other file types are not served)."""
    folder = resources.files(__name__).joinpath("static")
    assets = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in CONTENT_TYPES:
            assets[entry.name] = Asset(entry.read_bytes(), CONTENT_TYPES[suffix])
    if "index.html" not in assets:
        raise RuntimeError(f"the dashboard's index.html is missing from {folder}")
    return assets


def add_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at ``/dashboard/``; ``/`` and ``/dashboard`` redirect there."""
    assets = load_assets()

    def serve(name: str) -> Response:
        asset = assets.get(name)
        if asset is None:
            raise HTTPException(404, f"no dashboard file {name!r}")
        return Response(asset.body, media_type=asset.content_type, headers=SECURITY_HEADERS)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("dashboard/", status_code=307)

    @app.get("/dashboard", include_in_schema=False)
    def bare() -> RedirectResponse:
        return RedirectResponse("dashboard/", status_code=307)

    @app.get("/dashboard/", include_in_schema=False)
    def index() -> Response:
        return serve("index.html")

    @app.get("/dashboard/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        return serve(name)
