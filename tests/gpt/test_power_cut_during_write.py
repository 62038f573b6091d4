"""Power lost at any point of a write leaves one valid copy holding either the whole old table
or the whole new one — never a mix, never nothing.

Writes between two fsyncs may reach the disk in any order, partly, or torn mid-sector, so each
crash point applies every earlier fsync'd batch and any subset of the current batch's writes,
each whole or cut in half.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from railcar.gpt import CopyHealth, CopyRole, GptDisk, GptPrio, prio_of, prioritize, set_prio
from railcar.gpt.disk import read_state
from tests.gpt.tools import MemoryStore, cgpt_prio, sgdisk_verify

Write = tuple[int, bytes]


def _recorded_update(raw: bytes) -> tuple[GptDisk, list[list[Write]]]:
    """Run the postinst change (spec §2.3) and return the writes, batched by fsync."""
    store = MemoryStore(bytearray(raw))
    disk = GptDisk(store)
    disk.update(lambda e: prioritize(set_prio(e, 4, tries=1, successful=False), 4))
    batches: list[list[Write]] = [[]]
    for event in store.events:
        if event is None:
            batches.append([])
        else:
            batches[-1].append(event)
    return disk, [b for b in batches if b]


def _crash_images(raw: bytes, batches: list[list[Write]]) -> list[tuple[str, bytearray]]:
    images = []
    for i, batch in enumerate(batches):
        base = bytearray(raw)
        for offset, data in itertools.chain.from_iterable(batches[:i]):
            base[offset : offset + len(data)] = data
        # Each write of this batch: not reached (0), torn in half (1), or complete (2).
        for fates in itertools.product(range(3), repeat=len(batch)):
            image = base[:]
            for (offset, data), fate in zip(batch, fates, strict=True):
                kept = data[: len(data) * fate // 2]
                image[offset : offset + len(kept)] = kept
            images.append((f"batch {i} fates {fates}", image))
    return images


def test_every_crash_point_reads_old_or_new(pristine_image: Path) -> None:
    raw = pristine_image.read_bytes()
    done, batches = _recorded_update(raw)
    assert len(batches) == 2  # backup, fsync, primary, fsync
    assert all(offset > len(raw) // 2 for offset, _ in batches[0])  # the backup goes first
    old = GptDisk(MemoryStore(bytearray(raw))).table
    new = done.table
    assert old.entries != new.entries
    outcomes = set()
    for name, image in _crash_images(raw, batches):
        state = read_state(MemoryStore(image))
        valid = {state.primary.health, state.backup.health} & {CopyHealth.VALID}
        assert valid, name
        assert state.table.entries in (old.entries, new.entries), name
        outcomes.add(state.table.entries == new.entries)
    assert outcomes == {False, True}


def test_crash_between_backup_and_primary_keeps_a_valid_disk(
    pristine_image: Path, image: Path
) -> None:
    raw = pristine_image.read_bytes()
    _, batches = _recorded_update(raw)
    with open(image, "r+b") as f:
        for offset, data in batches[0]:  # backup written and fsync'd, then power lost
            f.seek(offset)
            f.write(data)
    with GptDisk.open(image, writable=True) as disk:
        state = disk.state
        assert state.source is CopyRole.PRIMARY
        assert state.backup.health is CopyHealth.STALE
        assert prio_of(disk.table.partition(4)) == GptPrio(0, 0, False)  # the old table
        disk.repair()
    sgdisk_verify(image)
    assert cgpt_prio(image, 4) == GptPrio(0, 0, False)
    assert image.read_bytes() == raw


@pytest.mark.parametrize("torn", ["entries", "header"])
def test_torn_primary_write_falls_back_to_the_new_backup(
    pristine_image: Path, image: Path, torn: str
) -> None:
    raw = pristine_image.read_bytes()
    _, batches = _recorded_update(raw)
    entries_write, header_write = batches[1]
    with open(image, "r+b") as f:
        for offset, data in batches[0]:
            f.seek(offset)
            f.write(data)
        offset, data = entries_write if torn == "entries" else header_write
        f.seek(offset)
        f.write(data[: len(data) // 2 + 1])
    with GptDisk.open(image, writable=True) as disk:
        assert disk.state.source is CopyRole.BACKUP
        assert prio_of(disk.table.partition(4)) == GptPrio(2, 1, False)  # the new table
        disk.repair()
    sgdisk_verify(image)
    assert cgpt_prio(image, 4) == GptPrio(2, 1, False)
