"""Long tests first: how ``scripts/test`` spreads the suite over pytest-xdist's workers.

Tests marked ``@pytest.mark.long(minutes)`` (the VM tests) are moved to the front of the
collection, longest first, and each test is its own unit of work handed to whichever worker
is free (greedy longest-first list scheduling). With xdist's default ``load`` scheduler the
first tests go out in contiguous chunks, so one worker could get every VM test back to back
while the other ran the short ones and then sat idle; ``loadgroup`` would do but stopped
grouping with pytest 9.2 (pytest-xdist issue 1386). The minutes are rough guest times
measured in CI (docs/PERFORMANCE.md); only their order matters.
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadScopeScheduling

LONG = "long"


def minutes(item: pytest.Item) -> float:
    mark = item.get_closest_marker(LONG)
    return float(mark.args[0]) if mark is not None else 0.0


def longest_first(items: list[pytest.Item]) -> None:
    """Stable sort: long tests first by their minutes, the rest in collection order."""
    items.sort(key=lambda item: -minutes(item))


class EachTestAUnit(LoadScopeScheduling):
    """xdist's scope scheduler with one test per scope: units go out in collection order,
    about two queued per worker, the next to the first worker that finishes one."""

    def _split_scope(self, nodeid: str) -> str:
        return nodeid
