"""Retention: instances not seen for N days and history older than N days are purged; what is
recent stays."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from railcar.omaha.model import Event
from railcar.server.admin import purge
from railcar.server.models import EventRecord, Instance, InstanceStatusHistory
from tests.server.conftest import Fleet


def test_purge_forgets_old_and_keeps_recent(fleet: Fleet) -> None:
    fleet.post("old-machine-00000000000000000000", "1.0.0")
    fleet.post(
        "old-machine-00000000000000000000",
        "1.0.0",
        ping=False,
        updatecheck=False,
        events=(Event(13, 1),),
    )
    fleet.clock.advance(days=200)
    fleet.post("new-machine-00000000000000000000", "1.0.0")
    with fleet.db.write() as s:
        result = purge(s, older_than=fleet.clock.now - timedelta(days=180))
    assert (result.instances, result.events) == (1, 1)
    assert result.history == 2  # granted + downloading of the old machine
    with fleet.db.read() as s:
        assert list(s.scalars(select(Instance.id))) == ["new-machine-00000000000000000000"]
        assert s.scalar(select(func.count()).select_from(EventRecord)) == 0
        assert s.scalar(select(func.count()).select_from(InstanceStatusHistory)) == 1
