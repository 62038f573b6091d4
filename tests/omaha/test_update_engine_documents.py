"""Documents shaped exactly as update_engine writes them (shared/spec/omaha-delivery.md §2.2,
§2.5) parse into the model; responses come out in Nebraska's shape, and the agent-side parser
enforces what update_engine requires of a response (§2.3)."""

from __future__ import annotations

import pytest

from railcar.omaha.codec import encode_request, encode_response, parse_request, parse_response
from railcar.omaha.errors import InvalidDocumentError
from railcar.omaha.model import (
    FLATCAR_APP_ID,
    AppResponse,
    Event,
    Manifest,
    Package,
    PostinstallAction,
    Response,
    UpdateCheck,
)

FIRST_CHECK_AFTER_UPDATE = b"""<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">
    <os version="Chateau" platform="CoreOS" sp="4152.2.3_x86_64"></os>
    <app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="4152.2.3" track="stable" bootid="{0b6a0c0e-2f0b-4f5e-9d6a-3c1d2e4f5a6b}" oem="ami" oemversion="3.2.0" alephversion="3815.2.0" machineid="5f3c2a1b9e8d4c7fa6b5e4d3c2b1a090" machinealias="web-01" lang="en-US" board="amd64-usr" hardware_class="" delta_okay="false" >
        <ping active="1"></ping>
        <updatecheck></updatecheck>
        <event eventtype="3" eventresult="2" previousversion="4081.2.1"></event>
    </app>
</request>
"""


def _envelope(app_body: str, extra_attrs: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<request protocol="3.0" '
        'version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" '
        'installsource="scheduler" ismachine="1"><os version="Chateau" platform="CoreOS" '
        'sp="4152.2.3_x86_64"></os><app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" '
        'version="4152.2.3" track="stable" machineid="5f3c2a1b9e8d4c7fa6b5e4d3c2b1a090" '
        f'board="amd64-usr" {extra_attrs}>{app_body}</app></request>'
    ).encode()


def test_first_check_after_an_update() -> None:
    request = parse_request(FIRST_CHECK_AFTER_UPDATE)
    assert request.version == "update_engine-0.4.10"
    assert request.installsource == "scheduler" and not request.interactive
    assert request.os is not None and request.os.sp == "4152.2.3_x86_64"
    (app,) = request.apps
    assert app.appid == "{" + FLATCAR_APP_ID + "}"
    assert (app.version, app.track, app.board) == ("4152.2.3", "stable", "amd64-usr")
    assert app.machineid == "5f3c2a1b9e8d4c7fa6b5e4d3c2b1a090"
    assert (app.oem, app.oemversion, app.alephversion) == ("ami", "3.2.0", "3815.2.0")
    assert app.machinealias == "web-01"
    assert app.ping and app.updatecheck and not app.delta_okay
    assert app.events == (Event(3, 2, None, "4081.2.1"),)


def test_event_only_request() -> None:
    (app,) = parse_request(_envelope('<event eventtype="13" eventresult="1"></event>')).apps
    assert not app.ping and not app.updatecheck
    assert app.events == (Event(13, 1),)


def test_error_event_with_the_test_omaha_url_flag_is_masked() -> None:
    body = _envelope('<event eventtype="3" eventresult="0" errorcode="268435490"></event>')
    (event,) = parse_request(body).apps[0].events
    assert event.error_code == 268435490
    assert event.code == 34  # OmahaResponseInvalid once bit 28 is masked off


def test_unknown_attributes_are_kept_not_refused() -> None:
    body = _envelope("<updatecheck/>", 'railcar_rolled_back="1.2.3" future="x"')
    app = parse_request(body).apps[0]
    assert app.extra == {"railcar_rolled_back": "1.2.3", "future": "x"}


def test_two_apps() -> None:
    body = FIRST_CHECK_AFTER_UPDATE.replace(
        b"</request>",
        b'<app appid="{11111111-2222-3333-4444-555555555555}" version="1.0.0" '
        b'machineid="5f3c2a1b9e8d4c7fa6b5e4d3c2b1a090"><updatecheck/></app></request>',
    )
    apps = parse_request(body).apps
    assert [a.appid[1:9] for a in apps] == ["e96281a6", "11111111"]


def test_bad_event_attribute_is_refused() -> None:
    with pytest.raises(InvalidDocumentError, match="eventresult='yes'"):
        parse_request(_envelope('<event eventtype="3" eventresult="yes"/>'))


def test_request_round_trip() -> None:
    request = parse_request(FIRST_CHECK_AFTER_UPDATE)
    assert parse_request(encode_request(request)) == request


GRANT = Response(
    apps=(
        AppResponse(
            appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}",
            ping=True,
            events=1,
            updatecheck=UpdateCheck(
                status="ok",
                urls=("https://updates.example/amd64-usr/4230.2.1/",),
                manifest=Manifest(
                    "4230.2.1",
                    (
                        Package(
                            "flatcar_production_update.gz",
                            481337216,
                            "3HYrDzT3QXOQVZc0uAvoIVGn3WA=",
                        ),
                        Package(
                            "oem-ami.gz",
                            2282,
                            "an4fLA7bK57Ftm+GYUcjdHNti7E=",
                            "dc1c1cd1cba3c4c45c6433bfce915c765df3762883dffd0a20074496f3e335f6",
                            False,
                        ),
                    ),
                    PostinstallAction("iLg/ltMzX4x4rvanvDxQFVUosjCHHvddsJkySli5XqA="),
                ),
            ),
        ),
    )
)


def test_grant_response_has_nebraska_shape() -> None:
    assert encode_response(GRANT).decode() == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<response protocol="3.0" server="railcar"><daystart elapsed_seconds="0" />'
        '<app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" status="ok"><ping status="ok" />'
        '<updatecheck status="ok"><urls>'
        '<url codebase="https://updates.example/amd64-usr/4230.2.1/" /></urls>'
        '<manifest version="4230.2.1"><packages>'
        '<package name="flatcar_production_update.gz" hash="3HYrDzT3QXOQVZc0uAvoIVGn3WA=" '
        'size="481337216" required="true" />'
        '<package name="oem-ami.gz" hash="an4fLA7bK57Ftm+GYUcjdHNti7E=" '
        'hash_sha256="dc1c1cd1cba3c4c45c6433bfce915c765df3762883dffd0a20074496f3e335f6" '
        'size="2282" required="false" /></packages>'
        '<actions><action event="postinstall" '
        'sha256="iLg/ltMzX4x4rvanvDxQFVUosjCHHvddsJkySli5XqA=" DisablePayloadBackoff="true" />'
        '</actions></manifest></updatecheck><event status="ok" /></app></response>'
    )


def test_response_round_trip() -> None:
    assert parse_response(encode_response(GRANT)) == GRANT


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ('<urls><url codebase="https://updates.example/amd64-usr/4230.2.1/" /></urls>', "url"),
        ('sha256="iLg/ltMzX4x4rvanvDxQFVUosjCHHvddsJkySli5XqA=" ', "postinstall"),
        ('size="481337216" ', "size"),
        ('<manifest version="4230.2.1">', "manifest"),
    ],
)
def test_response_missing_what_update_engine_requires(drop: str, message: str) -> None:
    body = encode_response(GRANT).decode().replace(drop, "")
    if drop.startswith("<manifest"):
        body = body.replace("</manifest>", "")
    with pytest.raises(InvalidDocumentError, match=message):
        parse_response(body.encode())


def test_noupdate_response() -> None:
    body = encode_response(
        Response(
            apps=(
                AppResponse(
                    appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}",
                    updatecheck=UpdateCheck("noupdate"),
                ),
            )
        )
    )
    assert b'<updatecheck status="noupdate" />' in body
    assert parse_response(body).apps[0].updatecheck == UpdateCheck("noupdate")
