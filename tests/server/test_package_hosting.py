"""Payload files hosted by the server: uploads checked against the record, downloads with
Range (resume), ETag, Content-Length, HEAD and conditional requests."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from railcar.omaha.model import FLATCAR_APP_ID
from railcar.server.api import ServerSettings
from railcar.server.db import database_url
from tests.server.conftest import Clock
from tests.server.test_admin_api import Api, make_api, omaha_body

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes


@contextmanager
def hosted_app(
    tmp_path: Path, payload: bytes = PAYLOAD, *, upload: bool = False
) -> Iterator[tuple[Api, str]]:
    """A server app with 2.0.0 published on ``stable`` as a hosted package (its file uploaded
    when ``upload``); yields the API and the package id."""
    settings = ServerSettings(
        clock=Clock(), hosted_base_url="http://testserver", package_dir=tmp_path / "packages"
    )
    for api in make_api(database_url(tmp_path / "data", None), settings):
        base = f"/api/apps/{FLATCAR_APP_ID}"
        package = api.client.post(
            f"{base}/packages",
            headers=api.headers(),
            json={
                "version": "2.0.0",
                "filename": "railcar_production_update.gz",
                "hosted": True,
                "size": len(payload),
                "hash": base64.b64encode(hashlib.sha1(payload).digest()).decode(),
                "sha256": base64.b64encode(hashlib.sha256(payload).digest()).decode(),
            },
        ).json()
        channel = api.client.post(
            f"{base}/channels",
            headers=api.headers(),
            json={"name": "stable", "package_id": package["id"]},
        ).json()
        api.client.post(
            f"{base}/groups",
            headers=api.headers(),
            json={"name": "Stable", "channel_id": channel["id"], "track": "stable"},
        )
        if upload:
            assert _upload(api, package["id"], payload) == 200
        yield api, package["id"]


@pytest.fixture
def hosted(tmp_path: Path) -> Iterator[tuple[Api, str]]:
    with hosted_app(tmp_path) as pair:
        yield pair


def _upload(api: Api, package_id: str, data: bytes) -> int:
    r = api.client.put(
        f"/api/apps/{FLATCAR_APP_ID}/packages/{package_id}/file",
        content=data,
        headers={**api.headers(), "Content-Type": "application/octet-stream"},
    )
    return int(r.status_code)


def test_not_offered_before_its_file_is_uploaded(hosted: tuple[Api, str]) -> None:
    api, _ = hosted
    assert b'status="noupdate"' in api.client.post("/v1/update/", content=omaha_body()).content


def test_upload_must_match_size_and_hashes(hosted: tuple[Api, str], tmp_path: Path) -> None:
    api, package_id = hosted
    assert _upload(api, package_id, PAYLOAD[:-1] + b"X") == 400
    assert _upload(api, package_id, PAYLOAD + b"extra") == 400
    assert _upload(api, package_id, PAYLOAD[:100]) == 400
    assert list((tmp_path / "packages").rglob("*.gz")) == []
    assert _upload(api, package_id, PAYLOAD) == 200
    answer = api.client.post("/v1/update/", content=omaha_body()).content
    assert f'codebase="http://testserver/packages/{package_id}/"'.encode() in answer


def test_download_range_etag_head(hosted: tuple[Api, str]) -> None:
    api, package_id = hosted
    assert _upload(api, package_id, PAYLOAD) == 200
    url = f"/packages/{package_id}/railcar_production_update.gz"
    full = api.client.get(url)
    assert full.status_code == 200 and full.content == PAYLOAD
    assert full.headers["content-length"] == str(len(PAYLOAD))
    assert full.headers["accept-ranges"] == "bytes"
    tag = full.headers["etag"]
    part = api.client.get(url, headers={"Range": "bytes=1048570-"})
    assert part.status_code == 206
    assert part.content == PAYLOAD[1048570:]
    assert part.headers["content-range"] == f"bytes 1048570-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"
    middle = api.client.get(url, headers={"Range": "bytes=10-19"})
    assert middle.content == PAYLOAD[10:20] and middle.headers["content-length"] == "10"
    suffix = api.client.get(url, headers={"Range": "bytes=-4"})
    assert suffix.content == b"tail"
    beyond = api.client.get(url, headers={"Range": f"bytes={len(PAYLOAD)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(PAYLOAD)}"
    assert api.client.get(url, headers={"If-None-Match": tag}).status_code == 304
    stale = api.client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and len(stale.content) == len(PAYLOAD)
    head = api.client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(PAYLOAD))
    assert api.client.get(f"/packages/{package_id}/other.gz").status_code == 404
