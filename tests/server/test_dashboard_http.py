"""The dashboard's files as plain HTTP serves them: where they are, their content types and
security headers, nothing fetched from another origin; and the two API additions the dashboard
uses (``GET /api/me``, an instance's events)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from railcar.omaha.codec import encode_request, parse_request
from railcar.omaha.model import FLATCAR_APP_ID, Event
from railcar.server.dashboard import load_assets
from railcar.server.db import database_url
from railcar.server.vocab import Role
from tests.server.test_admin_api import Api, make_api, omaha_body, publish
from tests.server.test_update_walk import MACHINE

STATIC = Path(__file__).parents[2] / "src/railcar/server/dashboard/static"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(database_url(tmp_path / "data", None))


def referenced(text: str) -> set[str]:
    """Files a page or module loads: src/href attributes and ES module imports."""
    found = set(re.findall(r'(?:src|href)="(?!data:)([^"#][^"]*)"', text))
    found |= set(re.findall(r'from\s+"([^"]+)"', text))
    found |= set(re.findall(r'import\s*\(\s*"([^"]+)"', text))
    return found


def test_root_and_bare_path_redirect_to_the_dashboard(api: Api) -> None:
    for path in ("/", "/dashboard"):
        answer = api.client.get(path, follow_redirects=False)
        assert answer.status_code == 307
        assert answer.headers["location"] == "dashboard/"
    assert api.client.get("/").url.path == "/dashboard/"


def test_every_file_is_served_with_its_type_and_loads_only_local_files(api: Api) -> None:
    index = api.client.get("/dashboard/")
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    csp = index.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert index.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="app.js">' in index.text

    wanted = {"text/css; charset=utf-8": 0, "text/javascript; charset=utf-8": 0}
    seen, todo = set(), ["index.html"]
    while todo:
        name = todo.pop()
        answer = api.client.get(f"/dashboard/{name}")
        assert answer.status_code == 200, name
        seen.add(name)
        kind = answer.headers["content-type"]
        if name.endswith(".js"):
            assert kind == "text/javascript; charset=utf-8", name
        elif name.endswith(".css"):
            assert kind == "text/css; charset=utf-8", name
        wanted[kind] = wanted.get(kind, 0) + 1
        for ref in referenced(answer.text):
            assert "://" not in ref and not ref.startswith("//"), (name, ref)
            if ref.removeprefix("./") not in seen:
                todo.append(ref.removeprefix("./"))
    # Every file in the package is reachable from index.html, and nothing else is served.
    on_disk = {p.name for p in STATIC.iterdir()}
    assert seen == on_disk == set(load_assets())
    assert wanted["text/css; charset=utf-8"] == 1 and wanted["text/javascript; charset=utf-8"] >= 5


def test_no_file_names_another_origin() -> None:
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"\b(?:https?|wss?|ftp):", text), path.name
        assert not re.search(r"""["'(]//[a-z0-9]""", text, re.IGNORECASE), path.name
        assert "@import" not in text and "innerHTML" not in text, path.name


def test_unknown_and_odd_names_are_404(api: Api) -> None:
    for name in ("nope.js", "..%2Fapi.py", "%2E%2E/__init__.py", "__init__.py", "static"):
        assert api.client.get(f"/dashboard/{name}").status_code == 404, name
    assert api.client.get("/dashboard/static/app.js").status_code == 404


def test_dashboard_is_not_part_of_the_api_document(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if not p.startswith("/api/")]
    assert "/api/me" in paths


def test_me_tells_the_tokens_role(api: Api) -> None:
    assert api.client.get("/api/me", headers=api.headers()).json() == {"role": "admin"}
    reader = api.client.get("/api/me", headers=api.headers(Role.READ_ONLY))
    assert reader.json() == {"role": "read-only"}
    assert api.client.get("/api/me").status_code == 401
    assert api.client.get("/api/me", headers={"Authorization": "Bearer x"}).status_code == 401


def test_instance_detail_lists_its_events_newest_first(api: Api) -> None:
    publish(api)
    assert api.client.post("/v1/update/", content=omaha_body()).status_code == 200
    check = parse_request(omaha_body())
    (app,) = check.apps
    for event in (Event(13, 1), Event(3, 0, error_code=268435465)):
        only_event = replace(app, ping=False, updatecheck=False, events=(event,))
        sent = api.client.post(
            "/v1/update/", content=encode_request(replace(check, apps=(only_event,)))
        )
        assert sent.status_code == 200
    detail = api.client.get(
        f"/api/apps/{FLATCAR_APP_ID}/instances/{MACHINE}",
        headers=api.headers(Role.READ_ONLY),
    ).json()
    assert [(e["event_type"], e["event_result"], e["error_code"]) for e in detail["events"]] == [
        (3, 0, 268435465),
        (13, 1, None),
    ]
    assert detail["status"] == 3 and len(detail["history"]) == 3
