"""The per-period limit holds exactly when many nodes ask at once (SQLite: one process, many
threads; the PostgreSQL suite repeats this across two server processes)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from railcar.server.admin import PolicySpec
from railcar.server.models import InstanceApplication
from tests.server.conftest import Fleet


def _granted(fleet: Fleet, machines: list[str]) -> int:
    """New grants made by one concurrent round of checks (re-serves do not count)."""

    def ask(machine: str) -> None:
        fleet.post(machine, "1.0.0")

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(ask, machines))
    with fleet.db.read() as s:
        return (
            s.scalar(
                select(func.count()).where(
                    InstanceApplication.last_update_granted_ts == fleet.clock.now
                )
            )
            or 0
        )


def test_period_limit_is_exact_under_concurrency(fleet: Fleet) -> None:
    fleet.set_policy(
        PolicySpec(max_updates_per_period=3, period_interval_s=3600, update_timeout_s=7200)
    )
    machines = [f"{i:032x}" for i in range(40)]
    assert _granted(fleet, machines) == 3
    # Later periods grant the next ones, still exactly up to the limit. The three updates
    # granted first time out (2 h) only after two periods, so concurrency caps period two.
    fleet.clock.advance(hours=1, seconds=1)
    assert _granted(fleet, machines) == 0  # 3 still in progress: the concurrency cap
    fleet.clock.advance(hours=1)
    assert _granted(fleet, machines) == 3


def test_safe_mode_grants_one_canary_under_concurrency(fleet: Fleet) -> None:
    fleet.set_policy(PolicySpec(safe_mode=True, max_updates_per_period=10, period_interval_s=3600))
    assert _granted(fleet, [f"{i:032x}" for i in range(30)]) == 1
