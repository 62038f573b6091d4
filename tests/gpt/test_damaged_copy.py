"""One damaged or stale copy is detected, the other is used, and repair restores the first —
to exactly the bytes sgdisk wrote and cgpt's own repair produces."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from railcar.gpt import CopyHealth, CopyRole, GptDisk, GptPrio, prio_of, set_prio
from railcar.gpt.errors import NoValidGptError
from tests.gpt.tools import MemoryStore, cgpt_prio, require_tool, run, sgdisk_verify

SECTOR = 512
LAST = 32 * 2048 - 1  # last LBA of the 32 MiB test image
BACKUP_ENTRIES = LAST - 32

# (what is damaged, byte offset of one flipped byte, the copy it belongs to, problem text)
DAMAGE = [
    ("primary header", 1 * SECTOR + 56, CopyRole.PRIMARY, "header CRC32"),
    ("primary entry array", 2 * SECTOR + 3 * 128 + 60, CopyRole.PRIMARY, "entry array"),
    ("backup header", LAST * SECTOR + 40, CopyRole.BACKUP, "header CRC32"),
    ("backup entry array", BACKUP_ENTRIES * SECTOR + 9, CopyRole.BACKUP, "entry array"),
    ("backup signature", LAST * SECTOR, CopyRole.BACKUP, "expected b'EFI PART'"),
]


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize(("what", "offset", "role", "problem"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damage_is_detected_and_repaired_from_the_other_copy(
    image: Path, pristine_image: Path, what: str, offset: int, role: CopyRole, problem: str
) -> None:
    _flip(image, offset)
    with GptDisk.open(image, writable=True) as disk:
        damaged = disk.state
        after = disk.repair()
    bad = damaged.primary if role is CopyRole.PRIMARY else damaged.backup
    good = damaged.backup if role is CopyRole.PRIMARY else damaged.primary
    assert bad.health is CopyHealth.DAMAGED and problem in (bad.problem or "")
    assert good.health is CopyHealth.VALID
    assert damaged.source is (CopyRole.BACKUP if role is CopyRole.PRIMARY else CopyRole.PRIMARY)
    assert prio_of(damaged.table.partition(3)) == GptPrio(1, 0, True)
    assert not after.needs_repair
    assert image.read_bytes() == pristine_image.read_bytes()
    sgdisk_verify(image)


@pytest.mark.parametrize("offset", [d[1] for d in DAMAGE[:4]], ids=[d[0] for d in DAMAGE[:4]])
def test_our_repair_writes_what_cgpt_repair_writes(
    image: Path, tmp_path: Path, offset: int
) -> None:
    _flip(image, offset)
    theirs = tmp_path / "cgpt.img"
    shutil.copyfile(image, theirs)
    run(require_tool("cgpt"), "repair", theirs)
    with GptDisk.open(image, writable=True) as disk:
        disk.repair()
    assert image.read_bytes() == theirs.read_bytes()


def test_a_change_on_a_damaged_disk_rewrites_both_copies(image: Path) -> None:
    _flip(image, 1 * SECTOR + 56)
    with GptDisk.open(image, writable=True) as disk:
        state = disk.update(lambda e: set_prio(e, 4, priority=2, tries=1))
    assert not state.needs_repair
    assert cgpt_prio(image, 4) == GptPrio(2, 1, False)  # cgpt_prio fails on any WARNING
    sgdisk_verify(image)


def test_a_stale_backup_loses_to_the_primary(pristine_image: Path) -> None:
    # Both copies well formed but different: what a crash after the backup write leaves.
    store = MemoryStore(bytearray(pristine_image.read_bytes()))
    disk = GptDisk(store)
    new = disk.table.with_entries(set_prio(disk.table.entries, 4, priority=9))
    stale = store.data[:]
    disk.write(new)
    # Put the old primary back: the backup now holds the newer table.
    store.data[: 34 * SECTOR] = stale[: 34 * SECTOR]
    disk = GptDisk(store)
    assert disk.state.primary.health is CopyHealth.VALID
    assert disk.state.backup.health is CopyHealth.STALE
    assert "partitions 4 differ" in (disk.state.backup.problem or "")
    assert prio_of(disk.table.partition(4)).priority == 0
    disk.repair()
    assert bytes(store.data) == pristine_image.read_bytes()


def test_both_copies_damaged_is_a_typed_error(image: Path) -> None:
    _flip(image, 1 * SECTOR + 56)
    _flip(image, LAST * SECTOR + 40)
    with pytest.raises(NoValidGptError, match=r"primary: .*CRC32.*backup: .*CRC32"):
        GptDisk.open(image).__enter__()


@pytest.mark.parametrize("cgpt_repaired_first", [False, True])
def test_an_image_copied_to_a_larger_disk(
    image: Path, pristine_image: Path, cgpt_repaired_first: bool
) -> None:
    # Flatcar images are written to disks larger than themselves: the backup is then mid-disk.
    with open(image, "r+b") as f:
        f.truncate(2 * image.stat().st_size)
    if cgpt_repaired_first:  # cgpt repair writes a backup at the end, leaves the primary as is
        run(require_tool("cgpt"), "repair", image)
    with GptDisk.open(image, writable=True) as disk:
        state = disk.state
        assert state.backup_moved_from == LAST
        assert state.needs_repair and "copied to a larger disk" in " ".join(state.problems())
        assert prio_of(state.table.partition(3)) == GptPrio(1, 0, True)
        after = disk.update(lambda e: set_prio(e, 4, tries=1))
    assert not after.needs_repair
    assert after.table.header.alternate_lba == 2 * LAST + 1
    assert cgpt_prio(image, 4) == GptPrio(0, 1, False)
    sgdisk_verify(image)
    # The partitions and the primary's usable range are untouched: growing is a resize.
    assert after.table.header.last_usable_lba == BACKUP_ENTRIES - 1
