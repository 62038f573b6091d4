"""The admin REST API end to end in-process: tokens and roles, the objects a release needs,
an Omaha grant through HTTP, instance search/detail/hide/delete, stats, activity, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from railcar.omaha.model import FLATCAR_APP_ID
from railcar.server import admin
from railcar.server.api import ServerSettings, create_app
from railcar.server.db import database_url, open_database
from railcar.server.vocab import Role
from tests.server.conftest import Clock, package_spec
from tests.server.test_update_walk import MACHINE

REQUEST = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<request protocol="3.0" version="update_engine-0.4.10"'
    ' updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">'
    '<os version="Chateau" platform="CoreOS" sp="1.0.0_x86_64"></os>'
    '<app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="{version}" track="{track}" '
    'machineid="{machine}" machinealias="{alias}" board="amd64-usr" delta_okay="false">'
    '<ping active="1"></ping><updatecheck></updatecheck></app></request>'
)


def omaha_body(
    machine: str = MACHINE, version: str = "1.0.0", track: str = "stable", alias: str = "web-01"
) -> bytes:
    return (
        REQUEST.replace("{version}", version)
        .replace("{track}", track)
        .replace("{machine}", machine)
        .replace("{alias}", alias)
    ).encode()


@dataclass
class Api:
    client: TestClient
    admin_token: str
    reader_token: str

    def headers(self, role: Role = Role.ADMIN) -> dict[str, str]:
        token = self.admin_token if role == Role.ADMIN else self.reader_token
        return {"Authorization": f"Bearer {token}"}


def make_api(url: str, settings: ServerSettings | None = None) -> Iterator[Api]:
    db = open_database(url)
    db.create_schema()
    with db.write() as s:
        admin.ensure_flatcar_application(s)
        admin_token = admin.create_token(s, "test admin", Role.ADMIN)
        reader_token = admin.create_token(s, "test reader", Role.READ_ONLY)
    with TestClient(create_app(db, settings or ServerSettings(clock=Clock()))) as client:
        yield Api(client, admin_token, reader_token)
    db.dispose()


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    yield from make_api(db_url)


def publish(api: Api, version: str = "2.0.0") -> dict[str, str]:
    """Package + channel + group through the API, as a release pipeline would."""
    spec = package_spec(version)
    base = f"/api/apps/{FLATCAR_APP_ID}"
    package = api.client.post(
        f"{base}/packages",
        headers=api.headers(),
        json={
            "version": spec.version,
            "filename": spec.filename,
            "size": spec.size,
            "hash": spec.sha1_b64,
            "sha256": spec.sha256_b64,
            "url": spec.url,
            "extra_files": [{"name": "oem-qemu.gz", "size": 10, "hash256": "ab" * 32}],
        },
    )
    assert package.status_code == 201, package.text
    channel = api.client.post(
        f"{base}/channels",
        headers=api.headers(),
        json={"name": "stable", "package_id": package.json()["id"]},
    )
    assert channel.status_code == 201, channel.text
    group = api.client.post(
        f"{base}/groups",
        headers=api.headers(),
        json={
            "name": "Stable",
            "channel_id": channel.json()["id"],
            "track": "stable",
            "policy": {"max_updates_per_period": 100, "period_interval_s": 3600},
        },
    )
    assert group.status_code == 201, group.text
    return {
        "package": package.json()["id"],
        "channel": channel.json()["id"],
        "group": group.json()["id"],
    }


def test_tokens_and_roles(api: Api) -> None:
    assert api.client.get("/api/apps").status_code == 401
    bad = api.client.get("/api/apps", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert api.client.get("/api/apps", headers=api.headers(Role.READ_ONLY)).status_code == 200
    refused = api.client.post("/api/apps", headers=api.headers(Role.READ_ONLY), json={"name": "x"})
    assert refused.status_code == 403
    assert "admin token" in refused.json()["detail"]
    created = api.client.post("/api/apps", headers=api.headers(), json={"name": "Railcar OS"})
    assert created.status_code == 201


def test_release_and_grant_over_http(api: Api) -> None:
    ids = publish(api)
    answer = api.client.post(
        "/v1/update/", content=omaha_body(), headers={"Content-Type": "text/xml"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert b'<updatecheck status="ok">' in answer.content
    assert b'name="oem-qemu.gz"' in answer.content and b'hash_sha256="abab' in answer.content
    base = f"/api/apps/{FLATCAR_APP_ID}"
    listing = api.client.get(
        f"{base}/instances", params={"search": "web-01"}, headers=api.headers(Role.READ_ONLY)
    ).json()
    assert listing["total"] == 1
    (instance,) = listing["instances"]
    assert instance["status"] == 2 and instance["last_update_version"] == "2.0.0"
    detail = api.client.get(f"{base}/instances/{MACHINE}", headers=api.headers()).json()
    assert [h["status"] for h in detail["history"]] == [2]
    stats = api.client.get(f"{base}/groups/{ids['group']}/stats", headers=api.headers()).json()
    assert stats["total_instances"] == 1
    assert stats["version_breakdown"] == {"1.0.0": 1}
    assert stats["updates_in_progress"] == 1 and stats["rollout_progress"] == 0.0
    activity = api.client.get("/api/activity", headers=api.headers()).json()
    assert sorted(a["activity_class"] for a in activity) == [2, 6]
    metrics = api.client.get("/metrics").text
    assert 'railcar_omaha_update_checks_total{answer="grant"} 1.0' in metrics
    assert (
        'railcar_instances{channel="stable",status="update_granted",version="1.0.0"} 1.0' in metrics
    )
    # the writer thread's batches; SQLite's group commit answers every Omaha request, so the one
    # request was a batch of one (PostgreSQL's fast batches take only fast-path requests)
    state = api.client.app.state  # type: ignore[attr-defined]
    batches, requests = state.handler.batches_written
    assert f"railcar_omaha_write_batches_total {float(batches)}" in metrics
    assert f"railcar_omaha_batched_requests_total {float(requests)}" in metrics
    assert (batches, requests) == ((1, 1) if state.db.is_sqlite else (0, 0))


def test_instance_events_show_error_codes(api: Api) -> None:
    publish(api)
    api.client.post("/v1/update/", content=omaha_body())  # granted: events now count
    error = omaha_body().replace(
        b'<ping active="1"></ping><updatecheck></updatecheck>',
        b'<event eventtype="13" eventresult="1"></event>'
        b'<event eventtype="3" eventresult="0" errorcode="268435477"></event>',
    )
    assert api.client.post("/v1/update/", content=error).status_code == 200
    base = f"/api/apps/{FLATCAR_APP_ID}/instances"
    events = api.client.get(f"{base}/{MACHINE}/events", headers=api.headers(Role.READ_ONLY))
    assert [(e["event_type"], e["event_result"], e["error_code"]) for e in events.json()] == [
        (3, 0, 268435477),  # newest first, flag bits kept (21 | TestOmahaUrl)
        (13, 1, None),
    ]
    one = api.client.get(f"{base}/{MACHINE}/events?limit=1", headers=api.headers()).json()
    assert len(one) == 1
    missing = api.client.get(f"{base}/{'f' * 32}/events", headers=api.headers())
    assert missing.status_code == 404


def test_search_hide_delete_instances(api: Api) -> None:
    publish(api)
    for i, alias in enumerate(("web-01", "web-02", "db-01")):
        api.client.post("/v1/update", content=omaha_body(f"{i:032x}", alias=alias))
    base = f"/api/apps/{FLATCAR_APP_ID}/instances"
    assert (
        api.client.get(base, params={"search": "web"}, headers=api.headers()).json()["total"] == 2
    )
    by_id = api.client.get(base, params={"search": "0" * 31}, headers=api.headers()).json()
    assert by_id["total"] == 3  # id prefix
    hidden = api.client.put(f"{base}/{0:032x}", json={"hidden": True}, headers=api.headers())
    assert hidden.json()["hidden"] is True
    assert api.client.get(base, headers=api.headers()).json()["total"] == 2
    assert (
        api.client.get(base, params={"include_hidden": True}, headers=api.headers()).json()["total"]
        == 3
    )
    assert api.client.delete(f"{base}/{1:032x}", headers=api.headers()).status_code == 204
    assert api.client.get(f"{base}/{1:032x}", headers=api.headers()).status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "version": "two",
                "filename": "u.gz",
                "size": 1,
                "hash": "",
                "sha256": "",
                "url": "http://x/",
            },
            "not a semantic version",
        ),
        (
            {
                "version": "2.0.0",
                "filename": "u.gz",
                "size": 1,
                "hash": "bm9wZQ==",
                "sha256": "",
                "url": "http://x/",
            },
            "decodes to 4 bytes; expected 20",
        ),
        (
            {
                "version": "2.0.0",
                "filename": "u.gz",
                "size": 1,
                "hash": "",
                "sha256": "",
                "url": "ftp://x/",
            },
            "must be an http(s) base URL",
        ),
    ],
)
def test_bad_package_is_refused_with_a_reason(
    api: Api, body: dict[str, object], message: str
) -> None:
    r = api.client.post(f"/api/apps/{FLATCAR_APP_ID}/packages", json=body, headers=api.headers())
    assert r.status_code == 400
    assert message in r.json()["detail"]


def test_bad_group_policy_is_refused(api: Api) -> None:
    r = api.client.post(
        f"/api/apps/{FLATCAR_APP_ID}/groups",
        headers=api.headers(),
        json={"name": "g", "policy": {"timezone": "Mars/Olympus"}},
    )
    assert r.status_code == 400
    assert "IANA" in r.json()["detail"]


def test_omaha_secret_path(tmp_path: Path) -> None:
    url = database_url(tmp_path / "data", None)
    for api in make_api(url, ServerSettings(omaha_secret="s3cret", clock=Clock())):
        publish(api)
        assert api.client.post("/v1/update/", content=omaha_body()).status_code in (404, 405)
        assert api.client.post("/v1/update/s3cret", content=omaha_body()).status_code == 200


def test_hostile_omaha_bodies_get_400(api: Api) -> None:
    from tests.omaha.test_hostile_bodies import CASES

    for name, (body, _) in CASES.items():
        r = api.client.post("/v1/update/", content=body)
        assert r.status_code == 400, name
    rejected = f"railcar_omaha_rejected_requests_total {float(len(CASES))}"
    assert rejected in api.client.get("/metrics").text


def test_exact_response_to_an_update_engine_check(api: Api) -> None:
    publish(api)
    r = api.client.post("/v1/update/", content=omaha_body())
    spec = package_spec("2.0.0")
    assert r.text == (
        '<?xml version="1.0" encoding="UTF-8"?>\n<response protocol="3.0" server="railcar">'
        '<daystart elapsed_seconds="0" /><app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" '
        'status="ok"><ping status="ok" /><updatecheck status="ok"><urls>'
        f'<url codebase="{spec.url}" /></urls><manifest version="2.0.0"><packages>'
        f'<package name="railcar_production_update.gz" hash="{spec.sha1_b64}" '
        f'size="{spec.size}" required="true" />'
        '<package name="oem-qemu.gz" hash="" hash_sha256="' + "ab" * 32 + '" size="10" '
        'required="false" /></packages><actions><action event="postinstall" '
        f'sha256="{spec.sha256_b64}" DisablePayloadBackoff="true" /></actions></manifest>'
        "</updatecheck></app></response>"
    )
