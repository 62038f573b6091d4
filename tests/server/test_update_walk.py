"""One instance through a whole update (spec §3.4), statuses and activity checked at each step;
and the ways a walk goes wrong: rollback, errors, re-serving, no downgrades."""

from __future__ import annotations

from sqlalchemy import select

from railcar.omaha.model import FLATCAR_APP_ID, Event, Response
from railcar.server.admin import PolicySpec, get_application, get_instance, status_history
from railcar.server.models import Activity, EventRecord
from railcar.server.vocab import ActivityClass, InstanceStatus
from tests.server.conftest import Fleet

MACHINE = "5f3c2a1b9e8d4c7fa6b5e4d3c2b1a090"


def _check(response: Response) -> str:
    (app,) = response.apps
    assert app.status == "ok"
    assert app.updatecheck is not None
    return app.updatecheck.status


def _status(fleet: Fleet) -> tuple[int | None, str, bool]:
    with fleet.db.read() as s:
        _, ia = get_instance(s, get_application(s, FLATCAR_APP_ID), MACHINE)
        return ia.status, ia.version, ia.update_in_progress


def _activities(fleet: Fleet) -> list[int]:
    with fleet.db.read() as s:
        return list(s.scalars(select(Activity.activity_class).order_by(Activity.id)))


def test_whole_update_walk(fleet: Fleet) -> None:
    # 1. first check on 1.0.0 with the 3/2 prev="" every check carries → granted 2.0.0
    r = fleet.post(MACHINE, "1.0.0", events=(Event(3, 2, None, ""),))
    assert _check(r) == "ok"
    (app,) = r.apps
    assert app.ping and app.events == 1
    assert app.updatecheck is not None and app.updatecheck.manifest is not None
    assert app.updatecheck.manifest.version == "2.0.0"
    assert app.updatecheck.urls == ("http://127.0.0.1:9/amd64-usr/2.0.0/",)
    assert _status(fleet) == (InstanceStatus.UPDATE_GRANTED, "1.0.0", True)
    # 2.–5. progress events, each acknowledged
    for event, status in (
        (Event(13, 1), InstanceStatus.DOWNLOADING),
        (Event(14, 1), InstanceStatus.DOWNLOADED),
        (Event(3, 1), InstanceStatus.DOWNLOADED),
    ):
        fleet.clock.advance(seconds=30)
        r = fleet.post(MACHINE, "1.0.0", ping=False, updatecheck=False, events=(event,))
        assert r.apps[0].events == 1 and r.apps[0].updatecheck is None
        assert _status(fleet)[0] == status
    # 6. pings while waiting for the reboot; a check meanwhile gets nothing new
    fleet.clock.advance(minutes=45)
    assert fleet.post(MACHINE, "1.0.0", updatecheck=False).apps[0].ping
    # 7. after the reboot: 3/2 with previousversion → Complete on 2.0.0, nothing more to do
    fleet.clock.advance(minutes=10)
    r = fleet.post(MACHINE, "2.0.0", events=(Event(3, 2, None, "1.0.0"),))
    assert _check(r) == "noupdate"
    assert _status(fleet) == (InstanceStatus.COMPLETE, "2.0.0", False)
    with fleet.db.read() as s:
        app_row = get_application(s, FLATCAR_APP_ID)
        history = [h.status for h in reversed(status_history(s, app_row, MACHINE))]
        events = [(e.event_type, e.event_result) for e in s.scalars(select(EventRecord))]
    assert history == [2, 7, 6, 4]
    assert events == [(13, 1), (14, 1), (3, 1), (3, 2)]
    assert _activities(fleet) == [
        ActivityClass.CHANNEL_PACKAGE_UPDATED,
        ActivityClass.ROLLOUT_STARTED,
        ActivityClass.ROLLOUT_FINISHED,
    ]


def test_granted_instance_is_re_served_without_policy(fleet: Fleet) -> None:
    fleet.set_policy(PolicySpec(max_updates_per_period=1, period_interval_s=3600))
    assert _check(fleet.post(MACHINE, "1.0.0")) == "ok"
    # The limit is used up, but the same node asking again gets its grant again.
    assert _check(fleet.post(MACHINE, "1.0.0")) == "ok"
    assert _check(fleet.post("another-machine-0000000000000000", "1.0.0")) == "noupdate"


def test_no_downgrade(fleet: Fleet) -> None:
    assert _check(fleet.post(MACHINE, "3.0.0")) == "noupdate"
    assert _check(fleet.post(MACHINE, "2.0.0")) == "noupdate"


def test_error_event_with_flag_bits_marks_error(fleet: Fleet) -> None:
    fleet.post(MACHINE, "1.0.0")
    fleet.post(
        MACHINE, "1.0.0", ping=False, updatecheck=False, events=(Event(3, 0, 0x10000000 | 10),)
    )  # PayloadHashMismatch | TestOmahaUrl
    assert _status(fleet)[:2] == (InstanceStatus.ERROR, "1.0.0")
    assert _activities(fleet)[-1] == ActivityClass.INSTANCE_UPDATE_FAILED
    with fleet.db.read() as s:
        (event,) = s.scalars(select(EventRecord)).all()
    assert event.error_code == 0x1000000A


def test_rollback_is_remembered_and_not_offered_again(fleet: Fleet) -> None:
    fleet.post(MACHINE, "1.0.0")
    # The bootloader fell back: same version, the rollback error inside the next check.
    r = fleet.post(MACHINE, "1.0.0", events=(Event(3, 0, 0x10000000 | 44),))
    assert _check(r) == "noupdate"
    assert _status(fleet)[0] == InstanceStatus.ERROR
    fleet.clock.advance(hours=2)
    assert _check(fleet.post(MACHINE, "1.0.0")) == "noupdate"
    fleet.publish("2.0.1")
    assert _check(fleet.post(MACHINE, "1.0.0")) == "ok"  # a newer fix is offered


def test_agent_reported_rollback_attribute(fleet: Fleet) -> None:
    r = fleet.post(MACHINE, "1.0.0", extra={"railcar_rolled_back": "2.0.0"})
    assert _check(r) == "noupdate"


def test_events_without_a_grant_are_dropped(fleet: Fleet) -> None:
    fleet.post(MACHINE, "2.0.0")  # up to date: registered, no grant
    fleet.post(MACHINE, "2.0.0", ping=False, updatecheck=False, events=(Event(13, 1),))
    with fleet.db.read() as s:
        assert s.scalars(select(EventRecord)).all() == []


def test_unknown_application_and_track(fleet: Fleet) -> None:
    r = fleet.post(MACHINE, "1.0.0", track="no-such-track")
    assert r.apps[0].status == "error-failedToRetrieveUpdatePackageInfo"
    assert r.apps[0].updatecheck is not None
    assert r.apps[0].updatecheck.status == "error-internal"


def test_legacy_group_uuid_as_track(fleet: Fleet) -> None:
    r = fleet.post(MACHINE, "1.0.0", track="9a2deb70-37be-4026-853f-bfdd6b347bbe")
    assert _check(r) == "ok"


def test_updates_disabled_answers_noupdate(fleet: Fleet) -> None:
    fleet.set_policy(PolicySpec(updates_enabled=False))
    assert _check(fleet.post(MACHINE, "1.0.0")) == "noupdate"


def test_floor_is_a_mandatory_step(fleet: Fleet) -> None:
    from railcar.server.admin import get_channel, set_floor

    fleet.publish("1.5.0")  # channel now targets 1.5.0 …
    fleet.publish("3.0.0")  # … and then 3.0.0; 1.5.0 becomes a floor below
    with fleet.db.write() as s:
        app = get_application(s, FLATCAR_APP_ID)
        from railcar.server.models import Package

        floor = s.scalars(select(Package).where(Package.version == "1.5.0")).one()
        set_floor(s, app, get_channel(s, app, fleet.channel_id), floor.id)
    r = fleet.post(MACHINE, "1.0.0")
    assert r.apps[0].updatecheck is not None and r.apps[0].updatecheck.manifest is not None
    assert r.apps[0].updatecheck.manifest.version == "1.5.0"
    fleet.post(MACHINE, "1.5.0", events=(Event(3, 2, None, "1.0.0"),))
    r = fleet.post(MACHINE, "1.5.0")
    assert r.apps[0].updatecheck is not None and r.apps[0].updatecheck.manifest is not None
    assert r.apps[0].updatecheck.manifest.version == "3.0.0"
