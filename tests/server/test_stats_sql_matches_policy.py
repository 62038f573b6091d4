"""The SQL statistics agree with the pure definitions in railcar.server.policy, on both
databases, for the same instance rows."""

from __future__ import annotations

from datetime import timedelta

from railcar.server.models import Instance, InstanceApplication
from railcar.server.policy import GroupPolicy, InstanceState, compute_stats
from railcar.server.stats import decision_stats, group_stats, rollout_finished
from tests.server.conftest import Fleet


def test_sql_stats_match_pure_stats(fleet: Fleet) -> None:
    now = fleet.clock.now
    policy = GroupPolicy(
        period_interval=timedelta(hours=1), update_timeout=timedelta(hours=2), safe_mode=True
    )
    rows = [
        InstanceState("2.0.0", now, "2.0.0", now - timedelta(hours=3), False),
        InstanceState("1.0.0", now, "2.0.0", now - timedelta(hours=3), False),
        InstanceState("1.0.0", now, "2.0.0", now - timedelta(minutes=30), True),
        InstanceState("1.0.0", now, "2.0.0", now - timedelta(hours=3), True),
        InstanceState("1.0.0", now - timedelta(hours=1)),
        InstanceState("1.0.0", now - timedelta(days=2), "2.0.0", now, True),
    ]
    with fleet.db.write() as s:
        from railcar.omaha.model import FLATCAR_APP_ID

        for i, row in enumerate(rows):
            s.add(Instance(id=f"m{i}", created_ts=now))
            s.flush()
            s.add(
                InstanceApplication(
                    instance_id=f"m{i}",
                    application_id=FLATCAR_APP_ID,
                    group_id=fleet.group_id,
                    version=row.version,
                    last_check_for_updates=row.last_check_for_updates,
                    last_update_version=row.last_update_version,
                    last_update_granted_ts=row.last_update_granted_ts,
                    update_in_progress=row.update_in_progress,
                    rolled_back_from="",
                )
            )
    expected = compute_stats(rows, "2.0.0", policy, now)
    with fleet.db.read() as s:
        assert group_stats(s, fleet.group_id, "2.0.0", policy, now) == expected
        fast = decision_stats(s, fleet.group_id, "2.0.0", policy, now)
        assert not rollout_finished(s, fleet.group_id, "2.0.0", now)
    assert fast.updates_granted_in_last_period == expected.updates_granted_in_last_period
    assert fast.updates_in_progress == expected.updates_in_progress
    assert fast.updates_timed_out == expected.updates_timed_out
    assert (fast.updates_to_current_version_attempted > 0) == (
        expected.updates_to_current_version_attempted > 0
    )
