"""Noticing a guest reset that never happened (ADR 0026).

Under TCG, a guest's warm reset sometimes never completes: the kernel's last words are
``reboot: machine restart``, then the console stays silent for good while QEMU spins a host
CPU. The reset happens, but OVMF hangs before its boot manager (one vCPU busy in firmware, the
other halted: ADR 0026). The update tests reboot a node several times, and one such
reset failed a whole 25-minute test. :class:`ResetWatch` is the pure part of the harness's
answer: fed the console's size and last finished line with a clock reading, it says when a
reset the guest asked for has been silent for longer than any reset takes, so the harness
(:class:`railcar.vm.qemu.Vm`) can record QEMU's state and power-cycle the VM (a new QEMU
process on the same disk and firmware variables).
"""

from __future__ import annotations

from dataclasses import dataclass

# The kernel's last console lines before the machine is reset. "reboot: " is pr_fmt in both
# files: kernel/reboot.c kernel_restart() prints "Restarting system", then
# arch/x86/kernel/reboot.c native_machine_restart() "machine restart"; after a panic,
# kernel/panic.c prints "Rebooting in %d seconds.." and resets without either.
RESET_LINES = ("reboot: machine restart", "reboot: Restarting system", "Rebooting in ")

# Console silence after a reset request that means the reset hung. A reset under TCG prints
# OVMF's screen-clearing escapes within seconds, and its boot-manager lines within ~15 s; a
# panic waits panic=10 s first (railcar.image.esp.kernel_cmdline).
RESET_SILENCE = 120.0


def asks_for_reset(line: str) -> bool:
    """Whether a finished console line is the kernel handing the machine to a reset."""
    return any(marker in line for marker in RESET_LINES)


@dataclass
class ResetWatch:
    """Tracks console growth; :meth:`observe` is true once a reset request has been followed
    by ``silence`` seconds without a byte. Clock and console are the caller's."""

    silence: float = RESET_SILENCE
    _size: int = -1
    _since: float = 0.0

    def observe(self, size: int, last_line: str, now: float) -> bool:
        """``size``: console bytes so far; ``last_line``: its last finished line."""
        if size != self._size:
            self._size, self._since = size, now
            return False
        return asks_for_reset(last_line) and now - self._since >= self.silence

    def restart(self, now: float) -> None:
        """The VM was power-cycled at ``now``: silence counts from here."""
        self._size, self._since = -1, now

    def silent_for(self, now: float) -> float:
        return now - self._since
