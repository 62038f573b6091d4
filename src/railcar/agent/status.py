"""What the agent shows the outside world, and the three things the outside may ask of it.

This is the seam between the agent's driver (which owns the update cycle) and its front ends:
the D-Bus service ``com.coreos.update1`` (``shared/spec/omaha-delivery.md`` §6.4, update_engine
``update_engine.xml``), the ``railcar agent`` CLI and tests. A front end holds an
:class:`AgentControl`; it never reaches into the driver.

:class:`StatusSnapshot` is update_engine's ``GetStatus`` 5-tuple ``(x last_checked_time,
d progress, s current_operation, s new_version, x new_size)`` plus Railcar's additions, which
front ends may show but D-Bus signatures never carry (so locksmith, FLUO and kured see exactly
update_engine's shape).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from railcar.agent.machine import UpdateStatus


@dataclass(frozen=True)
class StatusSnapshot:
    """One observation of the agent.

    ``last_checked_time`` is seconds since the epoch of the last *successful* update-check
    transfer (update_engine sets it only then, §6.4), 0 before the first; ``progress`` is the
    download fraction in [0, 1]; ``new_version``/``new_size`` describe the offered update
    ("0.0.0.0"/0 when there is none, as update_engine reports).
    """

    last_checked_time: int
    progress: float
    current_operation: UpdateStatus
    new_version: str
    new_size: int
    # Railcar additions (never on the update_engine D-Bus signature):
    running_version: str = ""
    rolled_back_from: tuple[str, ...] = ()
    last_error_code: int = 0

    def update_engine_tuple(self) -> tuple[int, float, str, str, int]:
        """The ``(xdssx)`` body of ``GetStatus`` and ``StatusUpdate``."""
        return (
            self.last_checked_time,
            self.progress,
            str(self.current_operation),
            self.new_version,
            self.new_size,
        )


StatusListener = Callable[[StatusSnapshot], None]


class AgentControl(Protocol):
    """What a front end may ask of a running agent (update_engine's D-Bus methods)."""

    def status(self) -> StatusSnapshot:
        """``GetStatus``: the current snapshot."""
        ...

    def attempt_update(self) -> None:
        """``AttemptUpdate``: start an interactive check now; ignored unless IDLE."""
        ...

    def reset_status(self) -> None:
        """``ResetStatus``: from IDLE or UPDATED_NEED_REBOOT back to IDLE; else refused."""
        ...

    def subscribe(self, listener: StatusListener) -> Callable[[], None]:
        """Call ``listener`` on every status change or progress step (``StatusUpdate``).

        Returns a function that unsubscribes. Listeners run on the driver's thread and must
        not block.
        """
        ...
