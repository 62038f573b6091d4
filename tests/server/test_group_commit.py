"""Group commit on SQLite: queued requests share one transaction, every request is answered
after the commit holding its writes, and one failing request fails alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from railcar.omaha.codec import encode_request, parse_request
from railcar.omaha.model import (
    FLATCAR_APP_ID,
    AppRequest,
    AppResponse,
    OsInfo,
    Request,
    Response,
)
from railcar.server.batching import GroupCommit
from railcar.server.db import Database, open_database
from railcar.server.models import Instance, InstanceApplication
from tests.server.conftest import Clock, make_fleet

MACHINES = [f"{n:032x}" for n in range(1, 31)]


def test_queued_requests_share_a_commit(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'railcar.db'}")
    db.create_schema()
    fleet = make_fleet(db, Clock(), group_commit=True)
    fleet.post("f" * 32, "2.0.0")  # learn the app id; one batch of one
    # While another writer holds the database, requests queue behind it.
    with db.write() as blocker:
        blocker.execute(text("SELECT 1"))
        futures = [fleet.handler.submit(_request(m), "127.0.0.1") for m in MACHINES]
        assert not any(f.done() for f in futures)
    answers = [f.result(timeout=30) for f in futures]
    assert all(a.apps[0].updatecheck is not None for a in answers)
    transactions, requests = fleet.handler.batches_written
    assert requests == 1 + len(MACHINES)
    assert transactions <= 3  # the first alone, the queued ones together (the writer may
    # have taken one before it met the lock)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(InstanceApplication)) == 31
    fleet.handler.close()


def _request(machine: str) -> Request:
    request = Request(
        apps=(
            AppRequest(
                appid="{" + FLATCAR_APP_ID + "}",
                version="2.0.0",
                track="stable",
                machineid=machine,
                board="amd64-usr",
                ping=True,
                updatecheck=True,
            ),
        ),
        os=OsInfo(sp="2.0.0_x86_64"),
    )
    return parse_request(encode_request(request))


def _writer(db: Database, poison: str) -> tuple[GroupCommit, list[str]]:
    alone: list[str] = []

    def answer_in(session: Session, request: Request, ip: str) -> tuple[Response, bool]:
        machine = request.apps[0].machineid
        session.add(Instance(id=machine, ip=ip))
        session.flush()
        if machine == poison:
            raise ValueError("poisoned request")
        return Response((AppResponse(request.apps[0].appid),)), True

    def answer_alone(request: Request, ip: str) -> Response:
        alone.append(request.apps[0].machineid)
        with db.write() as session:
            response, _ = answer_in(session, request, ip)
        return response

    return GroupCommit(db, answer_in, answer_alone), alone


def test_one_failing_request_fails_alone(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'railcar.db'}")
    db.create_schema()
    poison = MACHINES[7]
    writer, alone = _writer(db, poison)
    requests = [
        Request(apps=(AppRequest(appid="{a}", version="1.0.0", machineid=m),))
        for m in MACHINES[:12]
    ]
    with db.write() as blocker:
        blocker.execute(text("SELECT 1"))
        futures = [writer.submit(r, "10.0.0.1") for r in requests]
    for machine, future in zip(MACHINES[:12], futures, strict=True):
        if machine == poison:
            with pytest.raises(ValueError, match="poisoned"):
                future.result(timeout=30)
        else:
            assert future.result(timeout=30).apps[0].appid == "{a}"
    writer.close()
    with db.read() as s:
        stored = set(s.scalars(select(Instance.id)))
    assert stored == set(MACHINES[:12]) - {poison}  # the batch's other writes all kept
    assert poison in alone and len(alone) >= 2  # the failed batch was answered one by one


def test_event_loop_callers_are_answered_per_batch(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'railcar.db'}")
    db.create_schema()
    writer, _ = _writer(db, poison=MACHINES[3])
    machines = MACHINES[:20]

    async def ask_all() -> list[Response | BaseException]:
        with db.write() as blocker:  # the writer queues everything behind this transaction
            blocker.execute(text("SELECT 1"))
            tasks = [
                asyncio.ensure_future(
                    writer.answer(
                        Request(apps=(AppRequest(appid=m, version="1.0.0", machineid=m),)),
                        "10.0.0.1",
                    )
                )
                for m in machines
            ]
            await asyncio.sleep(0.2)  # let every request reach the writer's queue
        return await asyncio.gather(*tasks, return_exceptions=True)

    answers = asyncio.run(ask_all())
    writer.close()
    for machine, answer in zip(machines, answers, strict=True):
        if machine == MACHINES[3]:
            assert isinstance(answer, ValueError)
        else:
            assert isinstance(answer, Response) and answer.apps[0].appid == machine
    assert writer.requests == len(machines) and writer.batches <= 3
