"""A/B switching on a systemd-boot Railcar disk: gptprio is the record, the ESP follows it.

:class:`SystemdBootControl` is a :class:`railcar.agent.slots.BootControl`. Every transition
writes the GPT first (backup copy first, :class:`railcar.gpt.GptDisk`), then makes the ESP's
entries the projection of the new state (:mod:`railcar.image.bootentries`):

* ``install(slot, kernel, version)`` puts the slot's kernel and version on the ESP; nothing
  boots it yet;
* ``mark_install_target(slot)``: S0 T<tries> and ``prioritize`` (flatcar-postinst), entry
  ``railcar-x+T.conf`` sorted first;
* the loader's attempt: systemd-boot renames ``+T`` to ``+(T-1)-1`` (GRUB's ``gptprio.next``
  decrements tries in the GPT instead); :meth:`sync_from_loader` copies that count into the
  GPT, so ``cgpt show`` shows tries 0 for a slot that was tried — run it early on every boot
  and before every transition;
* ``mark_booted_good()``: S1 T0 and ``prioritize`` (flatcar-setgoodroot), entry without a
  counter;
* a failed attempt needs no action: the entry has no tries left, systemd-boot boots the other
  slot, and the next :meth:`sync_from_loader` records tries 0 — P2 T0 S0, exactly a failed slot
  in Flatcar's state table (spec §2.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from railcar.agent.slots import BootedSlotTargetError, GptBootControl, Slot, slot_numbers
from railcar.gpt import GptDisk, GptEntry, GptPrio, prio_of, set_prio
from railcar.image.bootentries import FIRST_BOOT_FLAG, IGNITION_FIRSTBOOT, SystemdBootEntries


class SystemdBootControl:
    """:class:`~railcar.agent.slots.BootControl` for a disk whose loader is systemd-boot."""

    def __init__(
        self, disk: GptDisk, entries: SystemdBootEntries, booted: Slot, *, tries: int = 1
    ) -> None:
        self.disk = disk
        self.entries = entries
        self.tries = tries
        self.gpt = GptBootControl(disk, booted)

    # --- BootControl ---------------------------------------------------------------------------

    def booted_slot(self) -> Slot:
        return self.gpt.booted_slot()

    def mark_install_target(self, slot: Slot) -> None:
        self.sync_from_loader()
        self.gpt.mark_install_target(slot)
        if self.tries != 1:
            number = slot_numbers(self.disk.table)[slot]

            def more_tries(entries: tuple[GptEntry, ...]) -> Sequence[GptEntry]:
                return set_prio(entries, number, tries=self.tries)

            self.disk.update(more_tries)
        self._project()

    def mark_booted_good(self) -> None:
        self.sync_from_loader()
        self.gpt.mark_booted_good()
        self._project()

    def mark_unbootable(self, slot: Slot) -> None:
        """P0 T0 S0 and no entry: the slot is about to be overwritten (the agent's first step)."""
        if slot is self.booted_slot():
            raise BootedSlotTargetError(
                f"refusing to take slot {slot.value} out of the boot order: it is running"
            )
        number = slot_numbers(self.disk.table)[slot]

        def unbootable(entries: tuple[GptEntry, ...]) -> Sequence[GptEntry]:
            return set_prio(entries, number, priority=0, tries=0, successful=False)

        self.sync_from_loader()
        self.disk.update(unbootable)
        self._project()

    def next_boot(self) -> Slot:
        return self.gpt.next_boot()

    def slot_state(self, slot: Slot) -> GptPrio:
        return self.gpt.slot_state(slot)

    # --- the systemd-boot side -----------------------------------------------------------------

    def install(self, slot: Slot, kernel: Path, new_version: str) -> None:
        """Put ``slot``'s kernel and version on the ESP; :meth:`mark_install_target` follows.

        The agent's ``railcar.agent.install.BootEntries`` step: the kernel may already be in
        place (``<boot_dir>/railcar/vmlinuz-x``), then only the version is recorded.
        """
        self.entries.install(slot, kernel, new_version)

    def sync_from_loader(self) -> None:
        """Record in the GPT the attempts systemd-boot counted on the ESP."""
        numbers = slot_numbers(self.disk.table)
        observed = self.entries.observed_tries()

        def counted(entries: tuple[GptEntry, ...]) -> Sequence[GptEntry]:
            for slot, left in observed.items():
                prio = prio_of(entries[numbers[slot] - 1])
                if left is not None and not prio.successful and left < prio.tries:
                    entries = set_prio(entries, numbers[slot], tries=left)
            return entries

        self.disk.update(counted)

    def finish_first_boot(self) -> bool:
        """End provisioning: entries without Ignition's options, then no flag (in that order,
        so an interruption can never make Ignition run twice). False if it was already over."""
        if not self.entries.first_boot():
            return False
        self.sync_from_loader()
        self._project(first_boot=False)
        self.entries.esp.remove(FIRST_BOOT_FLAG)
        return True

    def finish_interrupted_first_boot(self, cmdline: str) -> bool:
        """Finish a provisioning boot whose end was cut short between the two steps of
        :meth:`finish_first_boot`: the flag is still on the ESP, but this boot's kernel command
        line (``cmdline``) has no ``ignition.firstboot``, so ``railcar-first-boot.service`` did
        not run. Left alone, the next projection (an install) would give the entries Ignition's
        options again. False when there was nothing to do, or this is the provisioning boot."""
        if IGNITION_FIRSTBOOT in cmdline.split():
            return False  # the provisioning boot itself: railcar-first-boot.service ends it
        return self.finish_first_boot()

    def _project(self, *, first_boot: bool | None = None) -> None:
        numbers = slot_numbers(self.disk.table)
        self.entries.apply(
            {slot: self.gpt.slot_state(slot) for slot in Slot},
            numbers,
            {slot: self.entries.installed_version(slot) for slot in Slot},
            first_boot=first_boot,
        )
