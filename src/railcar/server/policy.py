"""Whether a group may grant one more update now: Nebraska's rollout policy as a pure function.

Semantics from Nebraska ``backend/pkg/api/updates.go`` ``enforceRolloutPolicy`` and
``dbreads/groups.go`` ``GetGroupUpdatesStats`` (``shared/spec/omaha-delivery.md`` §4.4):

1. updates disabled → refuse;
2. office hours on and now is not Mon–Fri 09:00–16:59 in the group's timezone → refuse;
3. ``max_updates_per_period`` ≥ 900,000 without safe mode → grant without looking at stats;
4. safe mode and nobody has attempted the current version yet → the limit is 1;
5. grants in the last period ≥ limit → refuse (instance goes On hold);
6. updates in progress (granted within the update timeout and not finished) ≥ limit → refuse;
7. safe mode and timed-out updates ≥ limit → refuse and trip the brake (updates disabled).

Railcar answers every refusal with ``noupdate`` (§9.4), so nodes do not send error events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

# Nebraska updates.go maxParallelUpdates: at or above this, stats are not even queried.
UNLIMITED_UPDATES = 900_000
# Nebraska dbreads validityInterval: instances not seen for a day do not count in stats.
STATS_VALIDITY = timedelta(days=1)
OFFICE_DAYS = range(0, 5)  # Monday..Friday
OFFICE_HOURS = range(9, 17)  # 09:00–16:59


@dataclass(frozen=True)
class GroupPolicy:
    updates_enabled: bool = True
    safe_mode: bool = False
    office_hours: bool = False
    timezone: str = "UTC"
    period_interval: timedelta = timedelta(minutes=1)
    max_updates_per_period: int = 999_999
    update_timeout: timedelta = timedelta(minutes=60)


@dataclass(frozen=True)
class GroupStats:
    total_instances: int = 0
    updates_to_current_version_granted: int = 0
    updates_to_current_version_attempted: int = 0
    updates_to_current_version_succeeded: int = 0
    updates_to_current_version_failed: int = 0
    updates_granted_in_last_period: int = 0
    updates_in_progress: int = 0
    updates_timed_out: int = 0


class Refusal(StrEnum):
    """Why no grant; values are Nebraska's app status strings for the same refusal."""

    UPDATES_DISABLED = "error-updatesDisabled"
    OUTSIDE_OFFICE_HOURS = "error-updatesDisabled-officeHours"
    MAX_UPDATES_PER_PERIOD = "error-maxUpdatesPerPeriodLimitReached"
    MAX_CONCURRENT_UPDATES = "error-maxConcurrentUpdatesLimitReached"
    MAX_TIMED_OUT_UPDATES = "error-maxTimedOutUpdatesLimitReached"


@dataclass(frozen=True)
class GrantDecision:
    granted: bool
    refusal: Refusal | None = None
    trip_brake: bool = False  # safe mode: disable updates for the group

    @property
    def puts_on_hold(self) -> bool:
        """Nebraska marks the instance On hold for the limit refusals."""
        return self.refusal in (
            Refusal.MAX_UPDATES_PER_PERIOD,
            Refusal.MAX_CONCURRENT_UPDATES,
            Refusal.MAX_TIMED_OUT_UPDATES,
        )


GRANT = GrantDecision(granted=True)


def needs_stats(policy: GroupPolicy) -> bool:
    return not (policy.max_updates_per_period >= UNLIMITED_UPDATES and not policy.safe_mode)


def in_office_hours(policy: GroupPolicy, now: datetime) -> bool:
    local = now.astimezone(ZoneInfo(policy.timezone))
    return local.weekday() in OFFICE_DAYS and local.hour in OFFICE_HOURS


def decide(policy: GroupPolicy, stats: GroupStats | None, now: datetime) -> GrantDecision:
    """The grant decision; ``stats`` may be None only when :func:`needs_stats` is false."""
    if not policy.updates_enabled:
        return GrantDecision(False, Refusal.UPDATES_DISABLED)
    if policy.office_hours and not in_office_hours(policy, now):
        return GrantDecision(False, Refusal.OUTSIDE_OFFICE_HOURS)
    if not needs_stats(policy):
        return GRANT
    if stats is None:
        raise ValueError("this policy needs group stats to decide")
    limit = policy.max_updates_per_period
    if policy.safe_mode and stats.updates_to_current_version_attempted == 0:
        limit = 1
    if stats.updates_granted_in_last_period >= limit:
        return GrantDecision(False, Refusal.MAX_UPDATES_PER_PERIOD)
    if stats.updates_in_progress >= limit:
        return GrantDecision(False, Refusal.MAX_CONCURRENT_UPDATES)
    if policy.safe_mode and stats.updates_timed_out >= limit:
        return GrantDecision(False, Refusal.MAX_TIMED_OUT_UPDATES, trip_brake=True)
    return GRANT


@dataclass(frozen=True)
class InstanceState:
    """The per-instance columns the stats are computed from."""

    version: str
    last_check_for_updates: datetime
    last_update_version: str | None = None
    last_update_granted_ts: datetime | None = None
    update_in_progress: bool = False


def compute_stats(
    instances: Iterable[InstanceState], channel_version: str, policy: GroupPolicy, now: datetime
) -> GroupStats:
    """GroupStats from instance rows, as Nebraska's aggregate query defines them.

    The database store computes the same in SQL; tests hold the two to agreement.
    """
    counts = dict.fromkeys(GroupStats.__dataclass_fields__, 0)
    for inst in instances:
        if inst.last_check_for_updates <= now - STATS_VALIDITY:
            continue
        counts["total_instances"] += 1
        current = inst.last_update_version == channel_version
        attempted = current and not inst.update_in_progress
        counts["updates_to_current_version_granted"] += current
        counts["updates_to_current_version_attempted"] += attempted
        counts["updates_to_current_version_succeeded"] += attempted and (
            inst.last_update_version == inst.version
        )
        counts["updates_to_current_version_failed"] += attempted and (
            inst.last_update_version != inst.version
        )
        granted = inst.last_update_granted_ts
        if granted is not None:
            counts["updates_granted_in_last_period"] += granted > now - policy.period_interval
            if inst.update_in_progress:
                within = now - granted <= policy.update_timeout
                counts["updates_in_progress"] += within
                counts["updates_timed_out"] += not within
    return GroupStats(**counts)
