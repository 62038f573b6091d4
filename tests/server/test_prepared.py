"""railcar.server.prepared on SQLite: the same values reach the database as through
SQLAlchemy's own execution, whichever way the parameters are merged."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    case,
    create_engine,
    select,
)
from sqlalchemy.exc import InvalidRequestError

from railcar.server.models import UtcDateTime
from railcar.server.prepared import Prepared

META = MetaData()
NODE = Table(
    "node",
    META,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("seen", UtcDateTime, nullable=True),
    Column("up", Boolean, nullable=True),
    Column("tag", String, nullable=False),
)
# A literal ("" and "none": anonymous bind parameters with values) next to named ones.
INSERT = Prepared(
    NODE.insert().values(
        id=bindparam("id"),
        name=case((bindparam("name") != "", bindparam("name")), else_="none"),
        seen=bindparam("seen", type_=UtcDateTime),
        up=bindparam("up", type_=Boolean),
        tag=bindparam("tag", value="default"),
    )
)
SELECT = Prepared(select(NODE.c.id, NODE.c.name, NODE.c.seen, NODE.c.up, NODE.c.tag))


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = create_engine("sqlite://")
    META.create_all(eng)
    yield eng
    eng.dispose()


def test_values_and_literals_reach_the_database_as_sqlalchemy_binds_them(engine: Engine) -> None:
    seen = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as conn:
        INSERT.run(conn, {"id": 1, "name": "a", "seen": seen, "up": True})
        INSERT.run(conn, {"id": 2, "name": "", "seen": None, "up": False, "tag": "given"})
        # the reference: SQLAlchemy's own execution of the same statement
        conn.execute(INSERT.statement, {"id": 3, "name": "a", "seen": seen, "up": True})
        raw = conn.exec_driver_sql("SELECT id, name, seen, up, tag FROM node ORDER BY id").all()
        rows = SELECT.rows(conn, {})
    assert [tuple(r) for r in raw] == [
        (1, "a", "2026-11-26 08:00:00.123456", 1, "default"),
        (2, "none", None, 0, "given"),
        (3, "a", "2026-11-26 08:00:00.123456", 1, "default"),
    ]
    assert rows[0].seen == datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=UTC)
    assert rows[0].up is True and rows[1].up is False and rows[1].seen is None
    assert rows[1].name == "none" and rows[1].tag == "given"


def test_a_missing_value_is_refused_as_sqlalchemy_refuses_it(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(InvalidRequestError, match="'up'"):
        INSERT.run(conn, {"id": 1, "name": "a", "seen": None})


def test_a_naive_datetime_is_refused(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(ValueError, match="naive datetime"):
        INSERT.run(conn, {"id": 1, "name": "a", "seen": datetime(2026, 1, 1), "up": True})


def test_a_callable_default_is_called_for_every_statement(engine: Engine) -> None:
    counter = itertools.count(1)
    stmt = Prepared(
        NODE.insert().values(id=bindparam("id", callable_=lambda: next(counter)), name="n", tag="t")
    )
    with engine.begin() as conn:
        stmt.run(conn, {})
        stmt.run(conn, {})
        ids = [r.id for r in SELECT.rows(conn, {})]
    assert ids == [1, 2]
