"""The agent's Omaha client against the real server app in-process: an offer from a hosted
package, noupdate, and every failure mapped to update_engine's error code (spec §2.1, §2.3)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from railcar.agent.machine import Offer
from railcar.agent.transport import OmahaClient, OmahaExchangeError, offer_from
from railcar.omaha.model import (
    FLATCAR_APP_ID,
    AppRequest,
    AppResponse,
    OsInfo,
    Request,
    Response,
    UpdateCheck,
)
from tests.server.test_admin_api import Api
from tests.server.test_package_hosting import hosted_app
from tests.server.test_update_walk import MACHINE

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes
PAYLOAD_SHA256 = base64.b64encode(hashlib.sha256(PAYLOAD).digest()).decode()
FILENAME = "railcar_production_update.gz"
SERVER_URL = "http://testserver/v1/update/"


class Recording(httpx.BaseTransport):
    """Passes requests on and remembers each request with the status it got."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.seen: list[tuple[httpx.Request, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.seen.append((request, response.status_code))
        return response


def hosted_server(
    tmp_path: Path, payload: bytes = PAYLOAD
) -> AbstractContextManager[tuple[Api, str]]:
    """A server app with 2.0.0 published on ``stable`` and its payload uploaded and hosted."""
    return hosted_app(tmp_path, payload, upload=True)


def in_process(api: Api) -> httpx.BaseTransport:
    """The TestClient's transport: requests go straight into the app, lifespan running."""
    transport: httpx.BaseTransport = api.client._transport
    return transport


def check_request(version: str = "1.0.0", appid: str = f"{{{FLATCAR_APP_ID}}}") -> Request:
    return Request(
        version="railcar-agent-test",
        updaterversion="railcar-agent-test",
        os=OsInfo(sp=f"{version}_x86_64"),
        apps=(
            AppRequest(
                appid=appid,
                version=version,
                track="stable",
                machineid=MACHINE,
                board="amd64-usr",
                ping=True,
                updatecheck=True,
            ),
        ),
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Api, str]]:
    with hosted_server(tmp_path) as hosted:
        yield hosted


def test_check_offers_the_hosted_package(server: tuple[Api, str]) -> None:
    api, package_id = server
    recording = Recording(in_process(api))
    with OmahaClient(SERVER_URL, recording) as client:
        response = client.exchange(check_request())
    offer = offer_from(response, FLATCAR_APP_ID)
    assert offer == Offer(
        version="2.0.0",
        urls=(f"http://testserver/packages/{package_id}/{FILENAME}",),
        size=len(PAYLOAD),
        sha256_b64=PAYLOAD_SHA256,
        disable_backoff=True,
    )
    (request, status), *_ = recording.seen
    assert request.method == "POST" and status == 200
    assert request.headers["content-type"] == "text/xml"
    payload = api.client.get(offer.urls[0])
    assert payload.content == PAYLOAD


def test_up_to_date_node_gets_noupdate(server: tuple[Api, str]) -> None:
    api, _ = server
    with OmahaClient(SERVER_URL, in_process(api)) as client:
        response = client.exchange(check_request(version="2.0.0"))
    assert offer_from(response, f"{{{FLATCAR_APP_ID}}}") is None


def test_unknown_app_is_an_invalid_response(server: tuple[Api, str]) -> None:
    api, _ = server
    other = "{00000000-0000-0000-0000-000000000001}"
    with OmahaClient(SERVER_URL, in_process(api)) as client:
        response = client.exchange(check_request(appid=other))
    with pytest.raises(OmahaExchangeError) as caught:
        offer_from(response, other)
    assert caught.value.code == 34


def _mock(handler: Callable[[httpx.Request], httpx.Response]) -> OmahaClient:
    return OmahaClient(SERVER_URL, httpx.MockTransport(handler))


def _code_of(client: OmahaClient) -> int:
    with client, pytest.raises(OmahaExchangeError) as caught:
        client.exchange(check_request())
    return caught.value.code


def test_http_500_maps_to_2500() -> None:
    client = _mock(lambda _: httpx.Response(500, text="boom"))
    with client, pytest.raises(OmahaExchangeError) as caught:
        client.exchange(check_request())
    assert caught.value.code == 2500 and caught.value.http_status == 500


def test_odd_http_statuses_are_clamped_and_no_answer_is_2000() -> None:
    assert _code_of(_mock(lambda _: httpx.Response(1042))) == 2999

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert _code_of(_mock(refuse)) == 2000


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", 30),
        (b"  \n", 30),
        (b"<response protocol='3.0'><app", 31),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><response protocol="3.0"/>', 31),
        (b"<response protocol='3.0'>" + b" " * 70_000 + b"</response>", 31),
        (b"<request protocol='3.0'/>", 34),
        (
            b"<response protocol='3.0'><app appid='x'><updatecheck status='ok'/></app></response>",
            34,
        ),
    ],
)
def test_unusable_bodies_map_to_update_engine_codes(body: bytes, code: int) -> None:
    assert _code_of(_mock(lambda _: httpx.Response(200, content=body))) == code


def test_offer_from_refuses_error_statuses_and_missing_apps() -> None:
    error = Response(
        apps=(AppResponse("{x}", "error-noPackageFound", True, UpdateCheck("error-internal")),)
    )
    for response, appid in ((error, "x"), (error, "y"), (Response(apps=(AppResponse("x"),)), "x")):
        with pytest.raises(OmahaExchangeError) as caught:
            offer_from(response, appid)
        assert caught.value.code == 34
