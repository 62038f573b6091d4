"""Group statistics in SQL: the same definitions as :func:`railcar.server.policy.compute_stats`
(Nebraska ``dbreads/groups.go`` ``GetGroupUpdatesStats``), in one aggregate query."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, select, true
from sqlalchemy.orm import Session

from railcar.server.models import InstanceApplication as Row
from railcar.server.policy import STATS_VALIDITY, GroupPolicy, GroupStats


def group_stats(
    session: Session, group_id: str, channel_version: str, policy: GroupPolicy, now: datetime
) -> GroupStats:
    def count(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    current = Row.last_update_version == channel_version
    attempted = and_(current, Row.update_in_progress.is_(False))
    granted_recently = Row.last_update_granted_ts > now - policy.period_interval
    deadline = now - policy.update_timeout
    in_progress = and_(Row.update_in_progress.is_(True), Row.last_update_granted_ts >= deadline)
    timed_out = and_(Row.update_in_progress.is_(True), Row.last_update_granted_ts < deadline)
    row = session.execute(
        select(
            func.count(),
            count(current),
            count(attempted),
            count(and_(attempted, Row.last_update_version == Row.version)),
            count(and_(attempted, Row.last_update_version != Row.version)),
            count(granted_recently),
            count(in_progress),
            count(timed_out),
        ).where(
            Row.group_id == group_id,
            Row.last_check_for_updates > now - STATS_VALIDITY,
        )
    ).one()
    return GroupStats(*(int(v) for v in row))


def decision_stats(
    session: Session, group_id: str, channel_version: str, policy: GroupPolicy, now: datetime
) -> GroupStats:
    """Only what :func:`~railcar.server.policy.decide` reads, from index ranges.

    :func:`group_stats` aggregates over every instance of the group, which for a large group on
    every update check is the cost Nebraska's users hit (nebraska#321/#323). The decision needs
    recent grants, in-flight updates and — in safe mode — whether anyone attempted the current
    version: each is a range of the (group, …) indexes, however large the group.
    """
    # The "seen in the last day" filter is applied to the few rows the (group, …) index finds;
    # wrapped so no planner takes the (group, last_check) index instead and walks the group.
    seen = func.coalesce(Row.last_check_for_updates, Row.last_check_for_updates) > (
        now - STATS_VALIDITY
    )
    granted = session.scalar(
        select(func.count()).where(
            Row.group_id == group_id,
            Row.last_update_granted_ts > now - policy.period_interval,
            seen,
        )
    )
    deadline = now - policy.update_timeout
    recent = Row.last_update_granted_ts >= deadline
    within, late = session.execute(
        select(
            func.coalesce(func.sum(case((recent, 1), else_=0)), 0),
            func.coalesce(func.sum(case((recent, 0), else_=1)), 0),
        ).where(Row.group_id == group_id, Row.update_in_progress == true(), seen)
    ).one()
    attempted = 0
    if policy.safe_mode:
        attempted = int(
            session.scalar(
                select(func.count()).select_from(
                    select(Row.instance_id)
                    .where(
                        Row.group_id == group_id,
                        Row.last_update_version == channel_version,
                        Row.update_in_progress.is_(False),
                        seen,
                    )
                    .limit(1)
                    .subquery()
                )
            )
            or 0
        )
    return GroupStats(
        updates_to_current_version_attempted=attempted,
        updates_granted_in_last_period=int(granted or 0),
        updates_in_progress=int(within),
        updates_timed_out=int(late),
    )


def rollout_finished(session: Session, group_id: str, channel_version: str, now: datetime) -> bool:
    """Every instance seen in the last day runs the channel version and is not mid-update
    (Nebraska: succeeded == total), answered by finding one that is not."""
    pending = session.scalar(
        select(Row.instance_id)
        .where(
            Row.group_id == group_id,
            Row.last_check_for_updates > now - STATS_VALIDITY,
            (Row.version != channel_version) | Row.update_in_progress.is_(True),
        )
        .limit(1)
    )
    return pending is None
