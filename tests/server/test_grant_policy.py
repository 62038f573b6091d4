"""The grant policy, table by table (Nebraska enforceRolloutPolicy semantics, spec §4.4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from railcar.server.policy import (
    GRANT,
    GrantDecision,
    GroupPolicy,
    GroupStats,
    InstanceState,
    Refusal,
    compute_stats,
    decide,
    needs_stats,
)

# A Wednesday, 10:30 UTC.
WEDNESDAY_1030 = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
LIMITED = GroupPolicy(max_updates_per_period=2, period_interval=timedelta(hours=1))

CASES: list[tuple[str, GroupPolicy, GroupStats, datetime, GrantDecision]] = [
    ("unlimited, no stats needed", GroupPolicy(), GroupStats(), WEDNESDAY_1030, GRANT),
    (
        "disabled",
        GroupPolicy(updates_enabled=False),
        GroupStats(),
        WEDNESDAY_1030,
        GrantDecision(False, Refusal.UPDATES_DISABLED),
    ),
    ("office hours, inside", GroupPolicy(office_hours=True), GroupStats(), WEDNESDAY_1030, GRANT),
    (
        "office hours, 17:00 is outside",
        GroupPolicy(office_hours=True),
        GroupStats(),
        WEDNESDAY_1030.replace(hour=17, minute=0),
        GrantDecision(False, Refusal.OUTSIDE_OFFICE_HOURS),
    ),
    (
        "office hours, 16:59 is inside",
        GroupPolicy(office_hours=True),
        GroupStats(),
        WEDNESDAY_1030.replace(hour=16, minute=59),
        GRANT,
    ),
    (
        "office hours, Saturday",
        GroupPolicy(office_hours=True),
        GroupStats(),
        WEDNESDAY_1030 + timedelta(days=3),
        GrantDecision(False, Refusal.OUTSIDE_OFFICE_HOURS),
    ),
    (
        "office hours in the group's timezone",
        GroupPolicy(office_hours=True, timezone="America/New_York"),
        GroupStats(),
        WEDNESDAY_1030,  # 05:30 in New York
        GrantDecision(False, Refusal.OUTSIDE_OFFICE_HOURS),
    ),
    (
        "under the period limit",
        LIMITED,
        GroupStats(updates_granted_in_last_period=1),
        WEDNESDAY_1030,
        GRANT,
    ),
    (
        "period limit reached",
        LIMITED,
        GroupStats(updates_granted_in_last_period=2),
        WEDNESDAY_1030,
        GrantDecision(False, Refusal.MAX_UPDATES_PER_PERIOD),
    ),
    (
        "concurrency limit reached",
        LIMITED,
        GroupStats(updates_in_progress=2),
        WEDNESDAY_1030,
        GrantDecision(False, Refusal.MAX_CONCURRENT_UPDATES),
    ),
    (
        "timeouts count only in safe mode",
        LIMITED,
        GroupStats(updates_timed_out=5),
        WEDNESDAY_1030,
        GRANT,
    ),
    (
        "safe mode: first canary",
        GroupPolicy(safe_mode=True, max_updates_per_period=5),
        GroupStats(),
        WEDNESDAY_1030,
        GRANT,
    ),
    (
        "safe mode: second waits for the canary",
        GroupPolicy(safe_mode=True, max_updates_per_period=5),
        GroupStats(updates_granted_in_last_period=1, updates_in_progress=1),
        WEDNESDAY_1030,
        GrantDecision(False, Refusal.MAX_UPDATES_PER_PERIOD),
    ),
    (
        "safe mode: after one attempt the real limit applies",
        GroupPolicy(safe_mode=True, max_updates_per_period=5),
        GroupStats(updates_to_current_version_attempted=1, updates_granted_in_last_period=1),
        WEDNESDAY_1030,
        GRANT,
    ),
    (
        "safe mode: timeouts trip the brake",
        GroupPolicy(safe_mode=True, max_updates_per_period=2),
        GroupStats(updates_to_current_version_attempted=1, updates_timed_out=2),
        WEDNESDAY_1030,
        GrantDecision(False, Refusal.MAX_TIMED_OUT_UPDATES, trip_brake=True),
    ),
    (
        "safe mode with 'unlimited' still reads stats",
        GroupPolicy(safe_mode=True),
        GroupStats(updates_granted_in_last_period=1),
        WEDNESDAY_1030,
        GrantDecision(False, Refusal.MAX_UPDATES_PER_PERIOD),
    ),
]


@pytest.mark.parametrize(
    ("name", "policy", "stats", "now", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_decide(
    name: str, policy: GroupPolicy, stats: GroupStats, now: datetime, expected: GrantDecision
) -> None:
    assert decide(policy, stats, now) == expected


def test_unlimited_policy_needs_no_stats() -> None:
    assert not needs_stats(GroupPolicy())
    assert decide(GroupPolicy(), None, WEDNESDAY_1030) == GRANT
    assert needs_stats(LIMITED)
    with pytest.raises(ValueError, match="needs group stats"):
        decide(LIMITED, None, WEDNESDAY_1030)


def test_limit_refusals_put_the_instance_on_hold() -> None:
    assert GrantDecision(False, Refusal.MAX_UPDATES_PER_PERIOD).puts_on_hold
    assert not GrantDecision(False, Refusal.UPDATES_DISABLED).puts_on_hold


def test_stats_from_instances() -> None:
    now = WEDNESDAY_1030
    policy = GroupPolicy(period_interval=timedelta(hours=1), update_timeout=timedelta(hours=2))
    rows = [
        # succeeded on 2.0.0
        InstanceState("2.0.0", now, "2.0.0", now - timedelta(hours=3), False),
        # failed: came back on 1.0.0
        InstanceState("1.0.0", now, "2.0.0", now - timedelta(hours=3), False),
        # in progress, granted 30 min ago (also in the last period)
        InstanceState("1.0.0", now, "2.0.0", now - timedelta(minutes=30), True),
        # timed out: granted 3 h ago, still in progress
        InstanceState("1.0.0", now, "2.0.0", now - timedelta(hours=3), True),
        # never granted
        InstanceState("1.0.0", now - timedelta(hours=1)),
        # not seen for two days: ignored
        InstanceState("1.0.0", now - timedelta(days=2), "2.0.0", now, True),
    ]
    assert compute_stats(rows, "2.0.0", policy, now) == GroupStats(
        total_instances=5,
        updates_to_current_version_granted=4,
        updates_to_current_version_attempted=2,
        updates_to_current_version_succeeded=1,
        updates_to_current_version_failed=1,
        updates_granted_in_last_period=1,
        updates_in_progress=1,
        updates_timed_out=1,
    )
