"""The Core fast path answers the common requests itself, and changes the database exactly as
the ORM handler does: the same random fleet history replayed against both gives the same
answers and the same rows."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from railcar.omaha.model import AppStatus, Event
from railcar.server.admin import PolicySpec
from railcar.server.db import database_url, open_database
from railcar.server.models import (
    Activity,
    EventRecord,
    Instance,
    InstanceApplication,
    InstanceStatusHistory,
)
from railcar.server.vocab import InstanceStatus
from tests.server.conftest import Clock, Fleet, make_fleet

MACHINES = [f"{n:032x}" for n in range(1, 25)]


@contextmanager
def statements(fleet: Fleet) -> Iterator[list[str]]:
    """The statements the database itself received (SQLite's trace hook sees those the fast
    path runs on the DBAPI cursor; on PostgreSQL every statement passes SQLAlchemy, except
    the batch's own, which its trace hook sees)."""
    seen: list[str] = []
    engine = fleet.db.engine
    batch = fleet.handler.pg_batch

    def record(sql: str) -> None:
        seen.append(sql.split(maxsplit=1)[0].upper())

    def on_cursor(*args: Any) -> None:
        record(str(args[2]))

    def on_checkout(dbapi_conn: Any, *_: Any) -> None:
        dbapi_conn.set_trace_callback(record)

    sqlite = engine.dialect.name == "sqlite"
    if batch is not None:
        batch.trace = record
    event.listen(
        engine,
        "checkout" if sqlite else "before_cursor_execute",
        on_checkout if sqlite else on_cursor,
    )
    try:
        yield seen
    finally:
        if sqlite:
            event.remove(engine, "checkout", on_checkout)
            engine.dispose()  # drop the traced connections
        else:
            event.remove(engine, "before_cursor_execute", on_cursor)
        if batch is not None:
            batch.trace = None


@pytest.fixture
def fast_fleet(db_url: str) -> Fleet:
    db = open_database(db_url)
    db.create_schema()
    return make_fleet(db, Clock(), fast_path=True)


def warm_up(fleet: Fleet) -> None:
    """The first request teaches the handler the app id; the second resolves the group."""
    for _ in range(2):
        fleet.post("f" * 32, "2.0.0")


def _queries(seen: list[str]) -> list[str]:
    return [s for s in seen if s not in ("BEGIN", "COMMIT", "ROLLBACK")]


def test_known_up_to_date_node_costs_two_statements(fast_fleet: Fleet) -> None:
    warm_up(fast_fleet)
    fast_fleet.post(MACHINES[0], "2.0.0")
    fast_fleet.clock.advance(minutes=45)
    with statements(fast_fleet) as seen:
        answer = fast_fleet.post(MACHINES[0], "2.0.0", events=(Event(3, 2, None, ""),))
    assert answer.apps[0].updatecheck is not None
    assert answer.apps[0].updatecheck.status == "noupdate"
    # group, node and instance rows, instance-app refresh (> 5 min since); no instance
    # upsert: nothing the node sent differs from the stored row
    assert _queries(seen) == ["SELECT", "UPDATE"]


def test_a_node_reporting_a_new_address_gets_its_instance_row_rewritten(
    fast_fleet: Fleet,
) -> None:
    warm_up(fast_fleet)
    fast_fleet.post(MACHINES[0], "2.0.0")
    with statements(fast_fleet) as seen:
        fast_fleet.handler.handle(fast_fleet.request(MACHINES[0], "2.0.0"), "10.0.0.9")
    assert _queries(seen) == ["SELECT", "INSERT"]  # group, node and instance rows; upsert
    with fast_fleet.db.read() as s:
        stored = s.get(Instance, MACHINES[0])
        assert stored is not None and stored.ip == "10.0.0.9"


def test_policy_refusal_is_answered_by_the_fast_path(fast_fleet: Fleet) -> None:
    fast_fleet.set_policy(PolicySpec(max_updates_per_period=1, period_interval_s=3600))
    warm_up(fast_fleet)
    first = fast_fleet.post(MACHINES[0], "1.0.0").apps[0].updatecheck
    assert first is not None and first.status == "ok"
    with statements(fast_fleet) as seen:
        answer = fast_fleet.post(MACHINES[1], "1.0.0")
    assert answer.apps[0].updatecheck is not None
    assert answer.apps[0].updatecheck.status == "noupdate"
    # group and node rows, grant stats (2 — the ORM grant above moved the write
    # generation), instance upsert, instance-app insert On hold, its history row
    assert _queries(seen) == ["SELECT", "SELECT", "SELECT", "INSERT", "INSERT", "INSERT"]
    with statements(fast_fleet) as seen:
        fast_fleet.post(MACHINES[2], "1.0.0")
    assert _queries(seen).count("SELECT") == 1, "stats are reused within a second"


def _rows(fleet: Fleet) -> dict[str, list[tuple[Any, ...]]]:
    with fleet.db.read() as s:
        return {
            "instance": sorted(
                (i.id, i.ip, i.alias, i.oem, i.oem_version, i.aleph_version)
                for i in s.scalars(select(Instance))
            ),
            "instance_application": sorted(
                (
                    a.instance_id,
                    a.group_id is not None,  # ids differ between the two databases
                    a.version,
                    a.status,
                    a.last_check_for_updates,
                    a.last_update_granted_ts,
                    a.last_update_version,
                    a.update_in_progress,
                    a.rolled_back_from,
                )
                for a in s.scalars(select(InstanceApplication))
            ),
            "history": sorted(
                (h.instance_id, h.status, h.version, h.created_ts)
                for h in s.scalars(select(InstanceStatusHistory))
            ),
            "events": sorted(
                (e.instance_id, e.event_type, e.event_result, e.error_code, e.created_ts)
                for e in s.scalars(select(EventRecord))
            ),
            "activity": sorted(
                # admin actions stamp wall-clock time; the handler's, the fake clock's
                (a.activity_class, a.group_id is None, a.instance_id, a.version)
                for a in s.scalars(select(Activity))
            ),
        }


def _random_history(fleet: Fleet, seed: int) -> list[Any]:
    """A seeded fleet history: checks, pings, progress events, completions, failures,
    rollback reports, new packages and policy changes, with time moving on."""
    rng = random.Random(seed)
    versions = dict.fromkeys(MACHINES, "1.0.0")
    answers: list[Any] = []
    published = ["2.0.0"]
    fleet.set_policy(PolicySpec(max_updates_per_period=2, period_interval_s=900))
    for step in range(300):
        fleet.clock.advance(seconds=rng.choice((5, 20, 60, 300, 4000)))
        roll = rng.random()
        if step % 90 == 89:
            nxt = f"{len(published) + 2}.0.0"
            fleet.publish(nxt)
            published.append(nxt)
            continue
        if step % 100 == 50:
            fleet.set_policy(
                PolicySpec(
                    max_updates_per_period=rng.choice((1, 2, 999_999)),
                    period_interval_s=rng.choice((60, 900)),
                    update_timeout_s=rng.choice((300, 3600)),
                    safe_mode=rng.random() < 0.3,
                )
            )
            continue
        machine = rng.choice(MACHINES)
        version = versions[machine]
        if roll < 0.55:
            answer = fleet.post(
                machine,
                version,
                events=(Event(3, 2, None, rng.choice(("", "1.0.0"))),),
                extra={"railcar_rolled_back": "3.0.0"} if rng.random() < 0.05 else None,
            )
            check = answer.apps[0].updatecheck
            if check is not None and check.manifest is not None and rng.random() < 0.7:
                versions[machine] = check.manifest.version  # installs and reboots later
        elif roll < 0.7:
            answer = fleet.post(machine, version, updatecheck=False)
        elif roll < 0.85:
            kind = rng.choice(((13, 1), (14, 1), (3, 1), (3, 0)))
            code = 2000 + rng.randrange(5) if kind == (3, 0) else None
            answer = fleet.post(
                machine, version, ping=False, updatecheck=False, events=(Event(*kind, code),)
            )
        else:
            answer = fleet.post(machine, version, events=(Event(3, 2, None, "1.0.0"),))
        answers.append(answer)
    return answers


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_fast_path_and_orm_agree_on_a_random_fleet_history(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SQLite: the fast path in the request's transaction; PostgreSQL: as the server runs it,
    batched (server/pgbatch.py) — against the ORM handler alone."""
    results = []
    for fast in (True, False):
        if database == "sqlite":
            url = f"sqlite:///{tmp_path / ('fast' if fast else 'orm')}.db"
        else:
            url = database_url(None, request.getfixturevalue("postgres").new_database())
        db = open_database(url)
        db.create_schema()
        fleet = make_fleet(db, Clock(), fast_path=fast, group_commit=database != "sqlite")
        answers = _random_history(fleet, seed=7)
        results.append((answers, _rows(fleet)))
        if fast:
            assert fleet.handler.fast_answers > len(answers) // 3
        fleet.handler.close()
        db.dispose()
    (fast_answers, fast_rows), (orm_answers, orm_rows) = results
    assert fast_answers == orm_answers
    for table in orm_rows:
        assert fast_rows[table] == orm_rows[table], table
    granted = sum(
        1 for a in orm_answers if a.apps[0].updatecheck and a.apps[0].updatecheck.manifest
    )
    on_hold = [r for r in orm_rows["history"] if r[1] == InstanceStatus.ON_HOLD]
    assert granted > 5 and on_hold, "the history must exercise grants and refusals"


def test_a_channel_that_stops_serving_the_nodes_arch_is_noticed(fleet: Fleet) -> None:
    from railcar.server.models import Channel

    for _ in range(3):  # learn the app id, resolve the group, answer fast
        first = fleet.post(MACHINES[0], "2.0.0")
        assert first.apps[0].status == "ok"
    with fleet.db.write() as s:
        channel = s.get(Channel, fleet.channel_id)
        assert channel is not None
        channel.arch = "arm64"
    answer = fleet.post(MACHINES[0], "2.0.0")
    # no group serves amd64 any more: the same answer with and without the fast path
    assert answer.apps[0].status == AppStatus.FAILED_TO_RETRIEVE
