"""gptprio: the A/B boot attributes of USR partitions, and cgpt's ``prioritize`` and ``next``.

Pure: these functions take and return tuples of :class:`~railcar.gpt.table.GptEntry`.

Bits of the 64-bit entry attribute (spec §2.1; ``seismograph:src/firmware/lib/cgptlib/include/
cgptlib_internal.h`` ``CGPT_ATTRIBUTE_*``, same layout as GRUB's ``gpt_partition.h``):
priority 48–51, tries 52–55, successful 56. Other bits are never touched.

Invariants:

* Only partitions whose type is the USR GUID take part (cgpt ``IsRoot()`` in
  ``seismograph:src/cgpt/cgpt_common.c``, GRUB ``gptprio.next``).
* :func:`prioritize` follows ``seismograph:src/cgpt/cgpt_prioritize.c``: USR partitions are
  grouped by current priority; the target (alone, or with its whole group when ``friends``) is
  moved above all; groups are ranked from ``max_priority`` (default ``min(groups, 15)``) down by
  one, never below 1; the priority-0 group stays at 0 unless it holds the target.
* :func:`next_boot` follows GRUB's ``gptprio.next`` (spec §2.2), the code that really boots:
  the highest priority > 0 among partitions with tries > 0 or successful; ties go to the lower
  partition number; tries are decremented when > 0. ``cgpt next`` (``cgpt_next.c``) differs
  only when nothing qualifies (it then returns the first USR partition) or when the first USR
  partition is unbootable (it may then pick a priority-0 one); we raise
  :class:`~railcar.gpt.errors.NoBootableUsrError` instead, as GRUB fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from railcar.gpt.errors import AttributeRangeError, NoBootableUsrError, NotUsrPartitionError
from railcar.gpt.partition_type import USR_TYPE_GUID, PartitionType
from railcar.gpt.table import GptEntry

# cgptlib_internal.h: CGPT_ATTRIBUTE_{PRIORITY,TRIES,SUCCESSFUL}_OFFSET are 48-48, 52-48 and
# 56-48 within the 16-bit ``gpt_att`` word that holds attribute bits 48-63.
PRIORITY_SHIFT = 48
TRIES_SHIFT = 52
SUCCESSFUL_SHIFT = 56
MAX_PRIORITY = 15  # CGPT_ATTRIBUTE_MAX_PRIORITY
MAX_TRIES = 15  # CGPT_ATTRIBUTE_MAX_TRIES
_NIBBLE = 0xF
_PRIO_MASK = (_NIBBLE << PRIORITY_SHIFT) | (_NIBBLE << TRIES_SHIFT) | (1 << SUCCESSFUL_SHIFT)


def _check_range(what: str, value: int, high: int, low: int = 0) -> None:
    if not low <= value <= high:
        raise AttributeRangeError(f"{what} {value} is out of range, expected {low} to {high}")


@dataclass(frozen=True)
class GptPrio:
    """The three gptprio fields of one partition."""

    priority: int = 0
    tries: int = 0
    successful: bool = False

    def __post_init__(self) -> None:
        _check_range("priority", self.priority, MAX_PRIORITY)
        _check_range("tries", self.tries, MAX_TRIES)

    @classmethod
    def from_attributes(cls, attributes: int) -> GptPrio:
        return cls(
            priority=(attributes >> PRIORITY_SHIFT) & _NIBBLE,
            tries=(attributes >> TRIES_SHIFT) & _NIBBLE,
            successful=bool((attributes >> SUCCESSFUL_SHIFT) & 1),
        )

    def to_attributes(self, attributes: int = 0) -> int:
        """``attributes`` with the gptprio bits replaced and every other bit kept."""
        return (
            (attributes & ~_PRIO_MASK)
            | (self.priority << PRIORITY_SHIFT)
            | (self.tries << TRIES_SHIFT)
            | (int(self.successful) << SUCCESSFUL_SHIFT)
        )

    @property
    def bootable(self) -> bool:
        """What GRUB's gptprio.next accepts: priority > 0 and (tries left or successful)."""
        return self.priority > 0 and (self.tries > 0 or self.successful)

    def as_dict(self) -> dict[str, int | bool]:
        return {"priority": self.priority, "tries": self.tries, "successful": self.successful}


def prio_of(entry: GptEntry) -> GptPrio:
    return GptPrio.from_attributes(entry.attributes)


def is_usr(entry: GptEntry) -> bool:
    return entry.type_guid == USR_TYPE_GUID


def with_prio(entry: GptEntry, prio: GptPrio) -> GptEntry:
    return replace(entry, attributes=prio.to_attributes(entry.attributes))


def _usr_entry(entries: Sequence[GptEntry], number: int) -> GptEntry:
    if not 1 <= number <= len(entries):
        raise NotUsrPartitionError(
            f"partition number {number} is out of range, expected 1 to {len(entries)}"
        )
    entry = entries[number - 1]
    if not is_usr(entry):
        raise NotUsrPartitionError(
            f"partition {number} has type {PartitionType.name_of(entry.type_guid)}, expected"
            f" {PartitionType.FLATCAR_USR.alias} ({USR_TYPE_GUID})"
        )
    return entry


def set_prio(
    entries: Sequence[GptEntry],
    number: int,
    *,
    priority: int | None = None,
    tries: int | None = None,
    successful: bool | None = None,
) -> tuple[GptEntry, ...]:
    """``cgpt add -i N [-P] [-T] [-S]``: change only the fields given.

    Like cgpt, any used partition may carry the bits; only gptprio's readers restrict to USR.
    """
    if not 1 <= number <= len(entries) or not entries[number - 1].is_used:
        raise NotUsrPartitionError(f"partition {number} is not a used entry of this table")
    old = prio_of(entries[number - 1])
    new = GptPrio(
        priority=old.priority if priority is None else priority,
        tries=old.tries if tries is None else tries,
        successful=old.successful if successful is None else successful,
    )
    out = list(entries)
    out[number - 1] = with_prio(entries[number - 1], new)
    return tuple(out)


def prioritize(
    entries: Sequence[GptEntry],
    number: int,
    *,
    max_priority: int | None = None,
    friends: bool = False,
) -> tuple[GptEntry, ...]:
    """``cgpt prioritize -i N [-P MAX] [-f]``: make partition ``number`` the highest priority."""
    _usr_entry(entries, number)
    if max_priority is not None:
        _check_range("maximum priority", max_priority, MAX_PRIORITY, low=1)
    target_priority = prio_of(entries[number - 1]).priority
    above_all = MAX_PRIORITY + 1  # cgpt_prioritize.c uses 99: any key above every real one

    groups: dict[int, list[int]] = {}
    for n, entry in enumerate(entries, start=1):
        if not is_usr(entry):
            continue
        key = prio_of(entry).priority
        if n == number or (friends and key == target_priority):
            key = above_all
        groups.setdefault(key, []).append(n)

    ranked = sorted(groups, reverse=True)
    if ranked[-1] == 0:
        ranked.pop()  # cgpt never raises a priority-0 group off zero, nor lowers one to it
    new_priority = max_priority if max_priority is not None else min(len(ranked), MAX_PRIORITY)
    new_of: dict[int, int] = {}
    for key in ranked:
        for n in groups[key]:
            new_of[n] = new_priority
        new_priority = max(new_priority - 1, 1)

    return tuple(
        with_prio(e, replace(prio_of(e), priority=new_of[n])) if n in new_of else e
        for n, e in enumerate(entries, start=1)
    )


def next_boot(entries: Sequence[GptEntry]) -> tuple[int, tuple[GptEntry, ...]]:
    """GRUB ``gptprio.next``: the partition to boot, and the entries with its tries spent."""
    best: int | None = None
    best_priority = 0
    for n, entry in enumerate(entries, start=1):
        prio = prio_of(entry)
        if is_usr(entry) and prio.bootable and prio.priority > best_priority:
            best, best_priority = n, prio.priority
    if best is None:
        usr = ", ".join(
            f"{n}: {prio_of(e).priority}/{prio_of(e).tries}/{int(prio_of(e).successful)}"
            for n, e in enumerate(entries, start=1)
            if is_usr(e)
        )
        raise NoBootableUsrError(
            "no USR partition has priority > 0 and tries > 0 or successful"
            f" (partition: priority/tries/successful = {usr or 'no USR partitions'})"
        )
    chosen = prio_of(entries[best - 1])
    if chosen.tries == 0:
        return best, tuple(entries)
    return best, set_prio(entries, best, tries=chosen.tries - 1)
