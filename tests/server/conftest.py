"""A server database with Flatcar's application, a package on a channel, and a group."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from railcar.omaha.codec import encode_request, encode_response, parse_request, parse_response
from railcar.omaha.model import FLATCAR_APP_ID, AppRequest, Event, OsInfo, Request, Response
from railcar.server.admin import (
    PackageSpec,
    PolicySpec,
    create_channel,
    create_group,
    create_package,
    ensure_flatcar_application,
)
from railcar.server.db import Database, database_url, open_database
from railcar.server.updates import OmahaHandler
from tests.postgres import PostgresServer, postgres_server


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 25, 10, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def package_spec(version: str, size: int = 1000) -> PackageSpec:
    data = version.encode() * 10
    return PackageSpec(
        version=version,
        filename="railcar_production_update.gz",
        size=size,
        sha1_b64=base64.b64encode(hashlib.sha1(data).digest()).decode(),
        sha256_b64=base64.b64encode(hashlib.sha256(data).digest()).decode(),
        url=f"http://127.0.0.1:9/amd64-usr/{version}/",
    )


@dataclass
class Fleet:
    db: Database
    clock: Clock
    handler: OmahaHandler
    group_id: str
    channel_id: str

    def set_policy(self, policy: PolicySpec) -> None:
        from railcar.server.admin import apply_policy, get_application, get_group

        with self.db.write() as s:
            group = get_group(s, get_application(s, FLATCAR_APP_ID), self.group_id)
            apply_policy(group, policy)

    def publish(self, version: str) -> None:
        from railcar.server.admin import (
            get_application,
            get_channel,
            set_channel_package,
        )

        with self.db.write() as s:
            app = get_application(s, FLATCAR_APP_ID)
            package = create_package(s, app, package_spec(version))
            set_channel_package(s, app, get_channel(s, app, self.channel_id), package.id)

    def request(
        self,
        machine: str,
        version: str,
        *,
        ping: bool = True,
        updatecheck: bool = True,
        events: tuple[Event, ...] = (),
        track: str = "stable",
        extra: dict[str, str] | None = None,
    ) -> Request:
        """One request as update_engine sends it, as the server parses it off the wire."""
        request = Request(
            apps=(
                AppRequest(
                    appid="{" + FLATCAR_APP_ID + "}",
                    version=version,
                    track=track,
                    bootid="{00000000-0000-0000-0000-000000000001}",
                    machineid=machine,
                    board="amd64-usr",
                    ping=ping,
                    updatecheck=updatecheck,
                    events=events,
                    extra=extra or {},
                ),
            ),
            version="update_engine-0.4.10",
            updaterversion="update_engine-0.4.10",
            os=OsInfo(sp=f"{version}_x86_64"),
        )
        return parse_request(encode_request(request))

    def post(
        self,
        machine: str,
        version: str,
        *,
        ping: bool = True,
        updatecheck: bool = True,
        events: tuple[Event, ...] = (),
        track: str = "stable",
        extra: dict[str, str] | None = None,
    ) -> Response:
        """One request through the handler and the wire codec both ways."""
        request = self.request(
            machine,
            version,
            ping=ping,
            updatecheck=updatecheck,
            events=events,
            track=track,
            extra=extra,
        )
        return parse_response(encode_response(self.handler.handle(request, "127.0.0.1")))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every server test runs on both databases."""
    if request.param == "sqlite":
        return database_url(tmp_path / "data", None)
    server: PostgresServer = request.getfixturevalue("postgres")
    return database_url(None, server.new_database())


def make_fleet(
    db: Database, clock: Clock, *, fast_path: bool = True, group_commit: bool = False
) -> Fleet:
    """Flatcar's application with package 2.0.0 on channel stable and group Stable."""
    with db.write() as s:
        app = ensure_flatcar_application(s)
        package = create_package(s, app, package_spec("2.0.0"))
        channel = create_channel(s, app, "stable", "amd64", package.id)
        group = create_group(s, app, "Stable", channel.id, track="stable")
        ids = group.id, channel.id
    handler = OmahaHandler(db, clock=clock, fast_path=fast_path, group_commit=group_commit)
    return Fleet(db, clock, handler, *ids)


@pytest.fixture(params=["served", "orm-only"])
def fleet(db_url: str, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    """Every handler scenario runs as the server runs it (Core fast path; group commit on
    SQLite) and through the ORM alone: same answers, same rows."""
    db = open_database(db_url)
    db.create_schema()
    served = request.param == "served"
    fleet = make_fleet(db, Clock(), fast_path=served, group_commit=served)
    yield fleet
    fleet.handler.close()
