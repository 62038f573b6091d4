"""Payload download against the server's hosted package: verification, resume with Range
(within one Downloader and across a restart), a tampered prefix, URL failover (spec §6.2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from railcar.agent.download import (
    Downloader,
    DownloadTransferError,
    PayloadHashMismatchError,
    PayloadSizeMismatchError,
    partial_path,
)
from tests.agent.test_omaha_transport import (
    FILENAME,
    PAYLOAD,
    PAYLOAD_SHA256,
    Recording,
    hosted_server,
    in_process,
)
from tests.server.test_admin_api import Api


class Counting:
    """A Progress that adds up what it is told."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.finished = False

    def start(self, label: str, total: int) -> None:
        self.total = total

    def advance(self, amount: int) -> None:
        self.done += amount

    def finish(self) -> None:
        self.finished = True


class CutAfter(httpx.BaseTransport):
    """Delivers only the first ``limit`` body bytes of the first payload GET, then fails."""

    def __init__(self, inner: httpx.BaseTransport, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.cut = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.cut:
            return response
        self.cut = True
        response.read()
        body = response.content[: self.limit]

        def stream() -> Iterator[bytes]:
            yield body
            raise httpx.ReadError("connection reset", request=request)

        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return httpx.Response(response.status_code, headers=headers, content=stream())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Api, str]]:
    with hosted_server(tmp_path) as hosted:
        yield hosted


def _url(package_id: str) -> str:
    return f"http://testserver/packages/{package_id}/{FILENAME}"


def test_download_verifies_and_lands(server: tuple[Api, str], tmp_path: Path) -> None:
    api, package_id = server
    dest = tmp_path / "out" / "update.gz"
    progress = Counting()
    with Downloader(in_process(api)) as downloader:
        got = downloader.fetch([_url(package_id)], dest, len(PAYLOAD), PAYLOAD_SHA256, progress)
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert not partial_path(dest).exists()
    assert progress.total == progress.done == len(PAYLOAD) and progress.finished


def test_partial_file_resumes_with_a_range_request(server: tuple[Api, str], tmp_path: Path) -> None:
    api, package_id = server
    dest = tmp_path / "update.gz"
    prefix = 300_000
    partial_path(dest).write_bytes(PAYLOAD[:prefix])  # left by an earlier process
    recording = Recording(in_process(api))
    with Downloader(recording) as downloader:
        downloader.fetch([_url(package_id)], dest, len(PAYLOAD), PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD
    [(request, status)] = recording.seen
    assert request.headers["range"] == f"bytes={prefix}-" and status == 206


def test_cut_transfer_resumes_within_one_fetch(server: tuple[Api, str], tmp_path: Path) -> None:
    api, package_id = server
    dest = tmp_path / "update.gz"
    recording = Recording(CutAfter(in_process(api), 123_456))
    with Downloader(recording) as downloader:
        downloader.fetch([_url(package_id)], dest, len(PAYLOAD), PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD
    first, second = recording.seen
    assert "range" not in first[0].headers
    assert second[0].headers["range"] == "bytes=123456-" and second[1] == 206


def test_ignored_range_restarts_from_zero(tmp_path: Path) -> None:
    def whole(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=PAYLOAD)

    dest = tmp_path / "update.gz"
    partial_path(dest).write_bytes(b"junk" * 1000)
    with Downloader(httpx.MockTransport(whole)) as downloader:
        downloader.fetch(["http://mirror/u.gz"], dest, len(PAYLOAD), PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD


def test_wrong_content_range_start_restarts_from_zero(tmp_path: Path) -> None:
    seen: list[str | None] = []

    def skewed(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("range"))
        if "range" in request.headers:
            total = len(PAYLOAD)
            return httpx.Response(
                206,
                content=PAYLOAD[10:],
                headers={"Content-Range": f"bytes 10-{total - 1}/{total}"},
            )
        return httpx.Response(200, content=PAYLOAD)

    dest = tmp_path / "update.gz"
    partial_path(dest).write_bytes(PAYLOAD[:5000])
    with Downloader(httpx.MockTransport(skewed)) as downloader:
        downloader.fetch(["http://mirror/u.gz"], dest, len(PAYLOAD), PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD and seen == ["bytes=5000-", None]


def test_corrupted_prefix_is_a_hash_mismatch(server: tuple[Api, str], tmp_path: Path) -> None:
    api, package_id = server
    dest = tmp_path / "update.gz"
    partial_path(dest).write_bytes(b"\xff" * 4096)  # same length as a real prefix, wrong bytes
    with Downloader(in_process(api)) as downloader, pytest.raises(PayloadHashMismatchError) as e:
        downloader.fetch([_url(package_id)], dest, len(PAYLOAD), PAYLOAD_SHA256)
    assert e.value.code == 10
    assert not dest.exists() and not partial_path(dest).exists()


def test_wrong_size_is_a_size_mismatch(server: tuple[Api, str], tmp_path: Path) -> None:
    api, package_id = server
    dest = tmp_path / "update.gz"
    with Downloader(in_process(api)) as downloader, pytest.raises(PayloadSizeMismatchError) as e:
        downloader.fetch([_url(package_id)], dest, len(PAYLOAD) - 1, PAYLOAD_SHA256)
    assert e.value.code == 11 and not dest.exists()


def test_first_url_404_fails_over_to_the_second(server: tuple[Api, str], tmp_path: Path) -> None:
    api, package_id = server
    dest = tmp_path / "update.gz"
    missing = f"http://testserver/packages/{package_id}/missing.gz"
    recording = Recording(in_process(api))
    with Downloader(recording) as downloader:
        downloader.fetch([missing, _url(package_id)], dest, len(PAYLOAD), PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert [(str(r.url), s) for r, s in recording.seen] == [(missing, 404), (_url(package_id), 200)]


def test_every_url_failing_is_a_transfer_error(tmp_path: Path) -> None:
    calls: list[str] = []

    def broken(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(503)

    dest = tmp_path / "update.gz"
    downloader = Downloader(httpx.MockTransport(broken), attempts_per_url=2)
    with downloader, pytest.raises(DownloadTransferError) as e:
        downloader.fetch(["http://a/u.gz", "http://b/u.gz"], dest, 10, PAYLOAD_SHA256)
    assert e.value.code == 9 and e.value.http_status == 503
    assert calls == ["http://a/u.gz"] * 2 + ["http://b/u.gz"] * 2
    assert not dest.exists()
