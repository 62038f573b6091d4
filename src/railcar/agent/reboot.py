"""What happens once an update is installed, or once a boot fails its health gate.

Strategies (``REBOOT_STRATEGY`` in update.conf, read by :mod:`railcar.agent.config`; the values
are locksmith's, ``shared/spec/omaha-delivery.md`` §7.1):

* ``reboot`` (default): reboot at once, as locksmith's ``reboot`` strategy does (without its
  5-minute wait for logged-in users; coordination comes with the reboot-coordination issue);
* ``off``: never reboot; leave it to an operator, kured (``/run/reboot-required``) or FLUO (the
  D-Bus status).

:func:`should_reboot` is the pure decision; :class:`Rebooter` is the seam, with
:class:`CommandRebooter` running ``systemctl reboot`` (systemd asks logind, like locksmith's
``login1.Reboot``).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from railcar.agent.config import RebootStrategy
from railcar.runner import run

log = logging.getLogger(__name__)

DEFAULT_REBOOT_COMMAND = ("systemctl", "reboot")


class RebootReason(StrEnum):
    UPDATE_INSTALLED = "update installed"
    BOOT_UNHEALTHY = "boot failed its health gate"


def should_reboot(strategy: RebootStrategy, reason: RebootReason) -> bool:
    """Whether the agent reboots the node itself for ``reason``."""
    return strategy is RebootStrategy.REBOOT


class Rebooter(Protocol):
    def reboot(self, reason: RebootReason) -> None: ...


class CommandRebooter:
    """Runs a reboot command (``systemctl reboot`` unless configured otherwise)."""

    def __init__(self, argv: Sequence[str] = DEFAULT_REBOOT_COMMAND) -> None:
        if not argv:
            raise ValueError("a reboot command needs at least one word")
        self.argv = tuple(argv)

    def reboot(self, reason: RebootReason) -> None:
        log.info("rebooting (%s): %s", reason.value, shlex.join(self.argv))
        run(self.argv)


def apply_strategy(strategy: RebootStrategy, reason: RebootReason, rebooter: Rebooter) -> bool:
    """Reboot if the strategy says so; returns whether a reboot was asked for."""
    if not should_reboot(strategy, reason):
        log.info("%s; REBOOT_STRATEGY=%s, not rebooting", reason.value, strategy.value)
        return False
    rebooter.reboot(reason)
    return True
