"""Small helpers of the Omaha hot path: the client address read from the ASGI scope, and the
fast path's connection looked up once per transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from starlette.requests import Request

from railcar.server.api import client_ip
from railcar.server.db import database_url, open_database
from railcar.server.fastpath import connection


def _request(headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/update/",
        "headers": headers,
        "client": client,
    }
    return Request(scope)


PEER = ("192.0.2.7", 40000)


@pytest.mark.parametrize(
    ("headers", "client", "expected"),
    [
        ([], PEER, "192.0.2.7"),
        ([], None, ""),
        ([(b"x-forwarded-for", b" 10.0.0.1 , 198.51.100.2")], PEER, "10.0.0.1"),
        ([(b"x-forwarded-for", b"2001:DB8::1")], PEER, "2001:db8::1"),
        ([(b"x-forwarded-for", b"not-an-address")], PEER, "192.0.2.7"),
        ([(b"x-forwarded-for", b"")], PEER, "192.0.2.7"),
        ([(b"x-forwarded-for", b", 10.0.0.1")], PEER, "192.0.2.7"),
        # only the first X-Forwarded-For header counts, as with request.headers.get
        (
            [(b"x-forwarded-for", b"bogus"), (b"x-forwarded-for", b"10.0.0.9")],
            PEER,
            "192.0.2.7",
        ),
        ([(b"host", b"x"), (b"x-forwarded-for", b"10.0.0.3")], None, "10.0.0.3"),
    ],
)
def test_client_ip_as_headers_and_client_give_it(
    headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None, expected: str
) -> None:
    assert client_ip(_request(headers, client)) == expected


def test_connection_is_the_sessions_own_for_each_transaction(tmp_path: Path) -> None:
    db = open_database(database_url(tmp_path, None))
    db.create_schema()
    try:
        seen = []
        for _ in range(2):
            with db.write() as s:
                conn = connection(s)
                assert conn is s.connection()
                assert connection(s) is conn
                with s.begin_nested():
                    assert connection(s) is s.connection()
                assert conn.execute(text("SELECT 1")).scalar() == 1
                seen.append(conn)
        assert seen[0] is not seen[1]
        assert seen[0].closed and seen[1].closed
    finally:
        db.dispose()
