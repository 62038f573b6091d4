"""The two USR slots and the one interface the agent uses to switch between them.

:class:`BootControl` is the seam: the agent's driver asks which slot is booted, marks a freshly
written slot as the install target, marks a healthy boot good, and asks (without writing) which
slot the bootloader will pick next. :class:`GptBootControl` implements it over
:mod:`railcar.gpt` on a disk image file or a block device; tests may use it on an image made by
sgdisk, or put a fake behind the Protocol.

Slots (spec §1.1, §1.3; ``scripts:build_library/disk_layout.json``): USR-A is partition 3 with
the fixed unique GUID ``7130c94a-…``, USR-B is partition 4 with ``e03dd35c-…``. A slot is found
on the disk by that GUID, else by its label (``USR-A``/``USR-B``); the partition number is the
one found, not assumed.

State changes (spec §2.3), each one write of both GPT copies, backup first
(:meth:`railcar.gpt.GptDisk.update`, which also repairs a damaged copy, like the ``cgpt repair``
both scripts run first):

* install (``ue:flatcar-postinst``): ``cgpt add -S0 -T1 DEV; cgpt prioritize DEV`` — the target
  gets successful 0, tries 1, then priority 2 and the other slot priority 1;
* healthy boot (``ue:flatcar-setgoodroot``): ``cgpt add -S1 -T0 $(rootdev -s /usr);
  cgpt prioritize`` it;
* before writing a slot: priority 0, tries 0, not successful (Railcar; see
  :meth:`GptBootControl.mark_unbootable`);
* failed boot: nothing here — GRUB's ``gptprio.next`` skips a slot with tries 0 and not
  successful, so the other slot boots (:meth:`BootControl.next_boot` predicts this).

Invariants:

* the booted slot is never an install target (update_engine ``GetInstallDev`` always swaps
  3↔4): :meth:`BootControl.mark_install_target` refuses it;
* :meth:`BootControl.next_boot` and :meth:`BootControl.slot_state` never write.

Errors::

    AgentError                       (railcar.agent.errors)
    └── SlotError                    the disk's USR slots cannot be used as asked
        ├── SlotNotFoundError        a slot is missing, not a USR partition, or ambiguous
        └── BootedSlotTargetError    installing to the slot that is running

GPT errors (:mod:`railcar.gpt.errors`: unreadable tables, ``NoBootableUsrError`` from
:meth:`BootControl.next_boot` when neither slot can boot) pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from railcar.agent.errors import AgentError
from railcar.gpt import (
    USR_A_UUID,
    USR_B_UUID,
    USR_TYPE_GUID,
    GptDisk,
    GptEntry,
    GptPrio,
    GptTable,
    next_boot,
    prio_of,
    prioritize,
    set_prio,
)
from railcar.gpt.errors import PartitionNotFoundError

# scripts:build_library/disk_layout.json: partitions 3 and 4 are USR-A and USR-B.
USR_A_NUMBER = 3
USR_B_NUMBER = 4


class SlotError(AgentError):
    """The disk's USR slots cannot be used as asked."""


class SlotNotFoundError(SlotError):
    """A slot is not on the disk (by GUID or label), is not a USR partition, or is ambiguous."""


class BootedSlotTargetError(SlotError):
    """Installing to the slot that is running, which would overwrite the live ``/usr``."""


class Slot(StrEnum):
    """A USR slot, named as its partition label ends."""

    A = "A"
    B = "B"

    @property
    def label(self) -> str:
        """The partition label disk_layout.json gives it: ``USR-A`` or ``USR-B``."""
        return f"USR-{self.value}"

    @property
    def partition_number(self) -> int:
        """Its number in Flatcar's layout (the number on a disk is the one found by GUID)."""
        return USR_A_NUMBER if self is Slot.A else USR_B_NUMBER

    @property
    def uuid(self) -> UUID:
        """Its fixed unique partition GUID (disk_layout.json; grub.cfg tests USR-A's)."""
        return USR_A_UUID if self is Slot.A else USR_B_UUID


def other(slot: Slot) -> Slot:
    """The slot that is not ``slot``: where an update goes while ``slot`` runs."""
    return Slot.B if slot is Slot.A else Slot.A


class BootControl(Protocol):
    """The one interface the agent uses to read and switch the A/B slots."""

    def booted_slot(self) -> Slot:
        """The slot ``/usr`` was mounted from."""
        ...

    def mark_install_target(self, slot: Slot) -> None:
        """Make ``slot`` boot next, once: S0 T1, then prioritize it (flatcar-postinst)."""
        ...

    def mark_unbootable(self, slot: Slot) -> None:
        """Take ``slot`` out of the boot order (P0 T0 S0) before its bytes are overwritten."""
        ...

    def mark_booted_good(self) -> None:
        """Keep booting the running slot: S1 T0, then prioritize it (flatcar-setgoodroot)."""
        ...

    def next_boot(self) -> Slot:
        """The slot the bootloader will pick next; a dry run that writes nothing."""
        ...

    def slot_state(self, slot: Slot) -> GptPrio:
        """The slot's priority, tries and successful flag."""
        ...


def find_slot(table: GptTable, slot: Slot) -> int:
    """The number of ``slot``'s partition: by its fixed GUID, else by its label."""
    try:
        number = table.find(unique_guid=slot.uuid)
    except PartitionNotFoundError as by_guid:
        try:
            number = table.find(label=slot.label)
        except PartitionNotFoundError as by_label:
            raise SlotNotFoundError(
                f"slot {slot.value} not found: {by_guid}; {by_label}",
                hint="is this a Flatcar-layout disk? USR-A and USR-B are partitions 3 and 4",
            ) from None
    entry = table.entries[number - 1]
    if entry.type_guid != USR_TYPE_GUID:
        raise SlotNotFoundError(
            f"slot {slot.value} (partition {number}) has type {entry.type_guid},"
            f" expected the USR type {USR_TYPE_GUID}"
        )
    return number


def slot_numbers(table: GptTable) -> dict[Slot, int]:
    """Both slots' partition numbers; they must be two different partitions."""
    numbers = {slot: find_slot(table, slot) for slot in Slot}
    if numbers[Slot.A] == numbers[Slot.B]:
        raise SlotNotFoundError(
            f"slots A and B are both partition {numbers[Slot.A]}, expected two partitions"
        )
    return numbers


class GptBootControl:
    """:class:`BootControl` over the GPT of a disk image or block device.

    ``disk`` must be opened writable for the ``mark_*`` methods; ``booted`` is the running slot
    (on a node, the partition behind ``/usr``, as ``rootdev -s /usr`` finds it).
    """

    def __init__(self, disk: GptDisk, booted: Slot) -> None:
        self.disk = disk
        self.booted = booted
        slot_numbers(disk.table)  # fail now, not halfway through an update

    def booted_slot(self) -> Slot:
        return self.booted

    def _number(self, slot: Slot) -> int:
        return find_slot(self.disk.table, slot)

    def _mark(self, slot: Slot, *, tries: int, successful: bool) -> None:
        number = self._number(slot)

        def change(entries: tuple[GptEntry, ...]) -> Sequence[GptEntry]:
            marked = set_prio(entries, number, tries=tries, successful=successful)
            return prioritize(marked, number)

        self.disk.update(change)

    def mark_install_target(self, slot: Slot) -> None:
        self._refuse_booted(slot)
        # ue:flatcar-postinst: cgpt add -S0 -T1 DEV; cgpt prioritize DEV
        self._mark(slot, tries=1, successful=False)

    def mark_unbootable(self, slot: Slot) -> None:
        # Railcar: update_engine overwrites the passive slot with its old attributes in place, so
        # a slot that once booted (S1) could be picked by gptprio with half-written bytes; a
        # priority of 0 is never chosen (spec §2.2), and prioritize leaves 0 alone.
        self._refuse_booted(slot)
        number = self._number(slot)
        self.disk.update(
            lambda entries: set_prio(entries, number, priority=0, tries=0, successful=False)
        )

    def _refuse_booted(self, slot: Slot) -> None:
        if slot is self.booted:
            raise BootedSlotTargetError(
                f"refusing to install to slot {slot.value}: it is the booted slot,"
                f" expected slot {other(slot).value}"
            )

    def mark_booted_good(self) -> None:
        # ue:flatcar-setgoodroot: cgpt add -S1 -T0 $dev; cgpt prioritize $dev
        self._mark(self.booted, tries=0, successful=True)

    def next_boot(self) -> Slot:
        numbers = slot_numbers(self.disk.table)
        number, _ = next_boot(self.disk.table.entries)  # the decremented entries are dropped
        for slot, n in numbers.items():
            if n == number:
                return slot
        raise SlotNotFoundError(
            f"the bootloader would boot partition {number}, which is neither slot"
            f" (A is {numbers[Slot.A]}, B is {numbers[Slot.B]})"
        )

    def slot_state(self, slot: Slot) -> GptPrio:
        return prio_of(self.disk.table.entries[self._number(slot) - 1])
