"""Group statistics in SQL: the same definitions as :func:`railcar.server.policy.compute_stats`
(Nebraska ``dbreads/groups.go`` ``GetGroupUpdatesStats``), in one aggregate query."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, select
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
