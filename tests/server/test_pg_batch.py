"""PostgreSQL's batched fast path (server/pgbatch.py): queued requests share one read and one
write statement, without BEGIN/COMMIT; a node row that changed between the batch's read and its
write is not overwritten — the request is answered afresh by the ORM handler."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from railcar.omaha.model import Request, Response
from railcar.server.admin import PolicySpec
from railcar.server.db import database_url, open_database
from railcar.server.models import InstanceApplication, InstanceStatusHistory
from railcar.server.pgbatch import PgFastBatch
from railcar.server.updates import OmahaHandler
from railcar.server.vocab import InstanceStatus
from tests.postgres import PostgresServer
from tests.server.conftest import Clock, Fleet, make_fleet
from tests.server.test_fast_path import statements

MACHINES = [f"{n:032x}" for n in range(1, 13)]


@pytest.fixture
def pg_fleet(postgres: PostgresServer) -> Iterator[Fleet]:
    db = open_database(database_url(None, postgres.new_database()))
    db.create_schema()
    fleet = make_fleet(db, Clock(), group_commit=True)
    for _ in range(2):  # learn the app id, resolve the group
        fleet.post("f" * 32, "2.0.0")
    yield fleet
    fleet.handler.close()
    db.dispose()


def _batch(fleet: Fleet) -> PgFastBatch:
    assert fleet.handler.pg_batch is not None
    return fleet.handler.pg_batch


def _node(session: Session, machine: str) -> InstanceApplication:
    return session.scalars(
        select(InstanceApplication).where(InstanceApplication.instance_id == machine)
    ).one()


def _answer(fleet: Fleet, requests: list[Request]) -> list[Response | None]:
    return _batch(fleet).answer([(r, "127.0.0.1") for r in requests])


def test_an_up_to_date_node_costs_one_read_and_one_write(pg_fleet: Fleet) -> None:
    pg_fleet.post(MACHINES[0], "2.0.0")
    pg_fleet.clock.advance(minutes=45)
    before = pg_fleet.handler.fast_answers
    with statements(pg_fleet) as seen:
        answer = pg_fleet.post(MACHINES[0], "2.0.0")
    assert answer.apps[0].updatecheck is not None
    assert answer.apps[0].updatecheck.status == "noupdate"
    assert seen == ["SELECT", "WITH"]  # no BEGIN, no COMMIT: one autocommit statement each
    assert pg_fleet.handler.fast_answers == before + 1
    with pg_fleet.db.read() as s:
        row = _node(s, MACHINES[0])
        assert row.last_check_for_updates == pg_fleet.clock.now


def test_queued_requests_share_two_statements(pg_fleet: Fleet) -> None:
    pg_fleet.set_policy(PolicySpec(max_updates_per_period=1, period_interval_s=3600))
    granted = pg_fleet.post("e" * 32, "1.0.0").apps[0].updatecheck
    assert granted is not None and granted.status == "ok"  # the ORM path: the period is full
    requests = [pg_fleet.request(m, "1.0.0") for m in MACHINES]
    batch = _batch(pg_fleet)
    before = batch.statements
    with statements(pg_fleet) as seen:
        answers = _answer(pg_fleet, requests)
    assert all(a is not None for a in answers)
    # the batch's read and write (the group's decision stats, read once, go through the ORM)
    assert batch.statements - before == 2
    assert seen.count("WITH") == 1 and "BEGIN" not in seen
    with pg_fleet.db.read() as s:
        held = s.scalars(
            select(InstanceApplication.instance_id).where(
                InstanceApplication.status == int(InstanceStatus.ON_HOLD)
            )
        ).all()
        history = s.scalars(
            select(InstanceStatusHistory.instance_id).where(
                InstanceStatusHistory.status == int(InstanceStatus.ON_HOLD)
            )
        ).all()
    assert sorted(held) == MACHINES
    assert sorted(history) == MACHINES


def test_a_machine_twice_in_one_batch_is_answered_once_there(pg_fleet: Fleet) -> None:
    request = pg_fleet.request(MACHINES[0], "2.0.0")
    answers = _answer(pg_fleet, [request, request])
    assert answers[0] is not None
    assert answers[1] is None  # the caller answers it on the full path, after this write


def test_a_row_changed_after_the_read_is_not_overwritten(pg_fleet: Fleet) -> None:
    """Between the batch's read and its write another process grants this node an update:
    the batch's stale refresh must not clobber the grant; the request is answered afresh."""
    machine = MACHINES[0]
    pg_fleet.post(machine, "2.0.0")
    pg_fleet.clock.advance(minutes=45)  # the next check refreshes the row
    other = OmahaHandler(pg_fleet.db, clock=pg_fleet.clock, fast_path=False)
    pg_fleet.publish("3.0.0")
    raced: list[bool] = []

    def grant_first(statement: str) -> None:
        if statement.lstrip().startswith("WITH") and not raced:
            raced.append(True)
            check = other.handle(pg_fleet.request(machine, "2.0.0"), "127.0.0.1")
            assert check.apps[0].updatecheck is not None
            assert check.apps[0].updatecheck.status == "ok"

    # The race needs the batched path to answer noupdate: a ping only.
    _batch(pg_fleet).trace = grant_first  # runs just before the batch's write is sent
    try:
        answer = _answer(pg_fleet, [pg_fleet.request(machine, "2.0.0", updatecheck=False)])
    finally:
        _batch(pg_fleet).trace = None
    assert raced
    assert answer == [None], "the guard must notice the row changed"
    with pg_fleet.db.read() as s:
        row = _node(s, machine)
        assert row.update_in_progress and row.status == int(InstanceStatus.UPDATE_GRANTED)
        assert row.last_update_version == "3.0.0"


def test_an_instance_upsert_that_changes_nothing_is_not_sent(pg_fleet: Fleet) -> None:
    """The batch leaves an unchanged instance row alone (an ON CONFLICT DO UPDATE would lock
    it: PostgreSQL records the locker's transaction in xmax), and still writes a changed
    attribute."""
    machine = MACHINES[0]
    assert _answer(pg_fleet, [pg_fleet.request(machine, "2.0.0")])[0] is not None  # creates it

    def xmax_and_ip() -> tuple[int, str]:
        with pg_fleet.db.read() as s:
            row = s.execute(
                text("SELECT xmax::text::bigint, ip FROM instance WHERE id = :id"), {"id": machine}
            ).one()
            return int(row[0]), str(row[1])

    before = xmax_and_ip()  # the node row's foreign-key check locked it once already
    assert before[1] == "127.0.0.1"
    pg_fleet.clock.advance(minutes=45)  # the node row is written again (its check time)
    assert _answer(pg_fleet, [pg_fleet.request(machine, "2.0.0")])[0] is not None
    assert xmax_and_ip() == before, "an unchanged instance row was locked or rewritten"
    pg_fleet.clock.advance(minutes=45)
    answer = _batch(pg_fleet).answer([(pg_fleet.request(machine, "2.0.0"), "10.0.0.9")])
    assert answer[0] is not None
    assert xmax_and_ip()[1] == "10.0.0.9"
