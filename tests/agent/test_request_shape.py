"""Requests a Railcar node sends have update_engine's shape (shared/spec/omaha-delivery.md §2.2,
§2.5(a)) so a Nebraska or Railcar server cannot tell the difference except where we decided."""

from __future__ import annotations

from dataclasses import replace

from railcar.agent.config import AgentConfig
from railcar.agent.machine import AgentState, CheckStarted, Prefs, SendRequest, step
from railcar.agent.request import ROLLED_BACK_ATTR, UPDATER_VERSION, RequestBody, build_request
from railcar.omaha.codec import encode_request, parse_request
from railcar.omaha.model import Event
from tests.agent.nodes import node_config
from tests.omaha.test_update_engine_documents import FIRST_CHECK_AFTER_UPDATE

ETC = "/etc/railcar/update.conf"


def _config() -> AgentConfig:
    return node_config(
        {
            ETC: "SERVER=https://railcar.example/v1/update/\nGROUP=stable\nMACHINE_ALIAS=web-01\n",
            "/etc/oem-release": "ID=ami\nVERSION_ID=3.2.0\n",
        }
    )


def _first_check_body() -> RequestBody:
    state = AgentState("4152.2.3", Prefs(aleph_version="3815.2.0", previous_version="4081.2.1"))
    effect = step(state, CheckStarted()).effects[-1]
    assert isinstance(effect, SendRequest)
    return effect.body


def test_first_check_after_update_matches_update_engine_document() -> None:
    ours = parse_request(
        encode_request(build_request(_config(), _first_check_body(), aleph_version="3815.2.0"))
    )
    theirs = parse_request(FIRST_CHECK_AFTER_UPDATE)
    # Only the client's self-description differs (a documented decision).
    assert ours.version == ours.updaterversion == UPDATER_VERSION
    assert replace(ours, version="", updaterversion="") == replace(
        theirs, version="", updaterversion=""
    )
    assert ours.apps[0].extra == theirs.apps[0].extra == {}


def test_encoded_attributes_in_update_engine_order() -> None:
    body = encode_request(build_request(_config(), _first_check_body(), aleph_version="3815.2.0"))
    text = body.decode()
    order = [
        "appid", "version", "track", "bootid", "oem", "oemversion", "alephversion", "machineid",
        "machinealias", "lang", "board", "hardware_class", "delta_okay",
    ]  # fmt: skip
    app = text[text.index("<app ") :]
    positions = [app.index(f' {name}="') for name in order]
    assert positions == sorted(positions)
    assert 'appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"' in app
    assert 'machineid="5f3c2a1b9e8d4c7fa6b5e4d3c2b1a090"' in app
    assert 'bootid="{0b6a0c0e-2f0b-4f5e-9d6a-3c1d2e4f5a6b}"' in app
    assert 'delta_okay="false"' in app


def test_rolled_back_versions_travel_as_railcar_attribute() -> None:
    request = build_request(
        _config(),
        RequestBody(ping=True, updatecheck=True, events=(Event(3, 0, 44),)),
        aleph_version="1",
        rolled_back_from=("4230.2.1", "4230.2.2"),
    )
    app = parse_request(encode_request(request)).apps[0]
    assert app.extra == {ROLLED_BACK_ATTR: "4230.2.1,4230.2.2"}
    assert app.events == (Event(3, 0, 44),)


def test_event_report_is_one_event_without_ping_or_check() -> None:
    request = build_request(
        _config(), RequestBody(events=(Event(13, 1),), interactive=True), aleph_version="1"
    )
    app = parse_request(encode_request(request)).apps[0]
    assert (app.ping, app.updatecheck, app.events) == (False, False, (Event(13, 1),))
    assert parse_request(encode_request(request)).installsource == "ondemandupdate"


def test_missing_aleph_falls_back_to_running_version_and_sp_has_arch() -> None:
    request = build_request(_config(), RequestBody(ping=True), aleph_version="")
    assert request.apps[0].alephversion == "4152.2.3"
    assert request.os is not None and request.os.sp == "4152.2.3_x86_64"
