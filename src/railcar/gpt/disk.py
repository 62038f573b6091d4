"""Reading, repairing and rewriting the two GPT copies of a disk image or block device.

The IO seam is :class:`BlockStore` (read, write, flush at byte offsets);
:class:`FileStore` implements it over a file or a block device, so no root and no loop device
are needed for images. Everything else here is decisions about which copy to trust.

Which copy is used (as cgpt's ``GptSanityCheck`` and GRUB's ``grub_gpt_repair`` decide): the
primary when it is valid, else the backup. A valid backup that differs from a valid primary is
*stale* and is overwritten by the next write or :meth:`GptDisk.repair`. The backup is looked for
in the disk's last LBA, as cgpt does; when an image was copied to a larger disk the next write
puts the backup there and points the primary at it (the usable range is not grown: that is a
resize, not a repair).

Crash safety. :meth:`GptDisk.write` writes, in this order: backup entry array, backup header,
fsync, primary entry array, primary header, fsync. Each header's CRC covers its own bytes and
its entry array's CRC, so a torn or half-written copy never reads as valid. Wherever power is
lost, one copy is valid and the table read back is either wholly the old one or wholly the new
one: before the first fsync the untouched primary (old) wins; after it the backup holds the new
table, and the primary is either still old and valid (old wins; backup stale) or damaged
(backup wins, new). GRUB's ``grub_gpt_write`` uses the same backup-first order (spec §2.2).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from railcar.gpt.errors import (
    BadSignatureError,
    GptFormatError,
    HeaderGeometryError,
    NotGptDiskError,
    NoValidGptError,
    TruncatedDiskError,
)
from railcar.gpt.table import (
    PRIMARY_HEADER_LBA,
    SECTOR_SIZE,
    SIGNATURE,
    CopyRole,
    GptEntry,
    GptHeader,
    GptTable,
    check_protective_mbr,
    parse_entries,
    parse_header,
)


class BlockStore(Protocol):
    """Where a GPT lives, addressed in bytes."""

    @property
    def size(self) -> int:
        """Bytes on the disk."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes; fewer only at the end of the disk."""
        ...

    def write(self, offset: int, data: bytes) -> None: ...

    def flush(self) -> None:
        """Return only when every write so far is durable (fsync)."""
        ...


class FileStore:
    """A :class:`BlockStore` over a disk image file or a block device."""

    def __init__(self, path: Path, *, writable: bool = False) -> None:
        self.path = path
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC
        self._fd = os.open(path, flags)
        # lseek to the end gives the size of block devices too, where stat() says 0.
        self._size = os.lseek(self._fd, 0, os.SEEK_END)

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def write(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def flush(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


class CopyHealth(StrEnum):
    VALID = "valid"
    STALE = "stale"  # well formed, but differs from the primary, which wins
    DAMAGED = "damaged"


@dataclass(frozen=True)
class CopyStatus:
    role: CopyRole
    lba: int  # where its header was looked for
    health: CopyHealth
    problem: str | None = None


@dataclass(frozen=True)
class DiskState:
    """What reading a disk found: the table in use and the state of each copy."""

    table: GptTable
    primary: CopyStatus
    backup: CopyStatus
    disk_sectors: int
    mbr_problem: str | None = None
    # Set when the primary places the backup elsewhere than the last LBA (a grown disk).
    backup_moved_from: int | None = None

    @property
    def needs_repair(self) -> bool:
        return (
            self.primary.health is not CopyHealth.VALID
            or self.backup.health is not CopyHealth.VALID
            or self.backup_moved_from is not None
        )

    @property
    def source(self) -> CopyRole:
        """The copy the table was read from."""
        return CopyRole.PRIMARY if self.primary.health is CopyHealth.VALID else CopyRole.BACKUP

    def copy_problems(self) -> list[str]:
        found = [f"{c.role} copy: {c.problem}" for c in (self.primary, self.backup) if c.problem]
        if self.backup_moved_from is not None:
            found.append(
                f"primary copy: places the backup at LBA {self.backup_moved_from}, but the disk"
                f" ends at LBA {self.disk_sectors - 1} (copied to a larger disk?)"
            )
        return found

    def problems(self) -> list[str]:
        found = self.copy_problems()
        if self.mbr_problem:
            found.append(f"protective MBR: {self.mbr_problem}")
        return found


_Copy = tuple[GptHeader, tuple[GptEntry, ...]]


def _read_copy(
    store: BlockStore, lba: int, role: CopyRole, disk_sectors: int, sector_size: int
) -> _Copy:
    sector = store.read(lba * sector_size, sector_size)
    header = parse_header(sector, lba=lba, disk_sectors=disk_sectors, sector_size=sector_size)
    if header.role is not role:
        raise HeaderGeometryError(
            f"header at LBA {lba} has alternate LBA {header.alternate_lba}, so it is a"
            f" {header.role} header where the {role} one belongs"
        )
    data = store.read(header.entries_lba * sector_size, header.num_entries * header.entry_size)
    return header, parse_entries(data, header)


def _declared_sectors(sector: bytes) -> int | None:
    """The disk size a primary header implies (alternate LBA + 1), whatever else is wrong."""
    if len(sector) < 40 or not sector.startswith(SIGNATURE):
        return None
    (alternate_lba,) = struct.unpack_from("<Q", sector, 32)  # UEFI 2.10 Table 5.21 AlternateLBA
    return int(alternate_lba) + 1


def read_state(store: BlockStore, *, sector_size: int = SECTOR_SIZE) -> DiskState:
    """Read and check both copies and choose one; raise a DiskError when neither is usable."""
    disk_sectors = store.size // sector_size
    # Protective MBR, primary header, one entry sector, backup header: the least a GPT can be.
    if disk_sectors < 4:
        raise TruncatedDiskError(
            f"the disk is {store.size} bytes, expected at least {4 * sector_size} for a GPT"
        )
    mbr_problem: str | None = None
    try:
        check_protective_mbr(store.read(0, sector_size))
    except GptFormatError as exc:
        mbr_problem = exc.message

    primary: _Copy | None = None
    backup: _Copy | None = None
    primary_error: GptFormatError | None = None
    backup_error: GptFormatError | None = None
    try:
        primary = _read_copy(store, PRIMARY_HEADER_LBA, CopyRole.PRIMARY, disk_sectors, sector_size)
    except GptFormatError as exc:
        primary_error = exc
    # Like cgpt, the backup is where it must be: the disk's last LBA, whatever the primary says.
    backup_lba = disk_sectors - 1
    try:
        backup = _read_copy(store, backup_lba, CopyRole.BACKUP, disk_sectors, sector_size)
    except GptFormatError as exc:
        backup_error = exc
    moved_from: int | None = None
    if primary is not None and primary[0].alternate_lba != backup_lba:
        # The image was copied to a larger disk: home the backup at the new end (cgpt repair).
        moved_from = primary[0].alternate_lba

    def damaged(role: CopyRole, lba: int, exc: GptFormatError) -> CopyStatus:
        return CopyStatus(role, lba, CopyHealth.DAMAGED, exc.message)

    if primary is not None:
        table = GptTable.from_copy(primary[0], primary[1], sector_size=sector_size)
        if moved_from is not None:
            table = table.with_backup_at(backup_lba)
        primary_status = CopyStatus(CopyRole.PRIMARY, PRIMARY_HEADER_LBA, CopyHealth.VALID)
        if backup is None:
            assert backup_error is not None
            backup_status = damaged(CopyRole.BACKUP, backup_lba, backup_error)
        else:
            table = GptTable(table.header, backup[0].entries_lba, table.entries, sector_size)
            difference = _difference(table, backup)
            health = CopyHealth.STALE if difference else CopyHealth.VALID
            backup_status = CopyStatus(CopyRole.BACKUP, backup_lba, health, difference)
    elif backup is not None:
        assert primary_error is not None
        table = GptTable.from_copy(backup[0], backup[1], sector_size=sector_size)
        primary_status = damaged(CopyRole.PRIMARY, PRIMARY_HEADER_LBA, primary_error)
        backup_status = CopyStatus(CopyRole.BACKUP, backup_lba, CopyHealth.VALID)
    else:
        assert primary_error is not None and backup_error is not None
        raise _no_gpt(store, sector_size, disk_sectors, primary_error, backup_error)
    return DiskState(table, primary_status, backup_status, disk_sectors, mbr_problem, moved_from)


def _difference(table: GptTable, backup: _Copy) -> str | None:
    """How a valid backup differs from what the primary implies; None if it does not."""
    expected = table.header_for(CopyRole.BACKUP)
    header, entries = backup
    if len(entries) != len(table.entries):
        return f"valid, but it has {len(entries)} entries and the primary {len(table.entries)}"
    if entries != table.entries:
        numbers = [
            str(n)
            for n, (a, b) in enumerate(zip(entries, table.entries, strict=True), start=1)
            if a != b
        ]
        return f"valid, but partitions {', '.join(numbers)} differ from the primary's"
    if header != expected:
        fields = [
            name
            for name in expected.__dataclass_fields__
            if getattr(header, name) != getattr(expected, name)
        ]
        return f"valid, but its header differs from the primary's in {', '.join(fields)}"
    return None


def _no_gpt(
    store: BlockStore,
    sector_size: int,
    disk_sectors: int,
    primary_error: GptFormatError,
    backup_error: GptFormatError,
) -> Exception:
    declared = _declared_sectors(store.read(PRIMARY_HEADER_LBA * sector_size, sector_size))
    if declared is not None and declared > disk_sectors:
        return TruncatedDiskError(
            f"the disk is {store.size} bytes but its GPT header places the backup header at"
            f" LBA {declared - 1}, expected at least {declared * sector_size} bytes",
            hint="the image was cut short; copy it again in full",
        )
    if isinstance(primary_error, BadSignatureError) and isinstance(backup_error, BadSignatureError):
        return NotGptDiskError(
            f"no GPT: neither LBA 1 nor LBA {disk_sectors - 1} starts with {SIGNATURE!r}",
            hint="is this a whole disk (not a partition) with a GPT partition table?",
        )
    return NoValidGptError(
        f"both GPT copies are damaged: primary: {primary_error}; backup: {backup_error}",
        hint="restore the partition table (sgdisk --load-backup) from a saved copy",
    )


def write_table(store: BlockStore, table: GptTable) -> None:
    """Write both copies, backup first, each followed by an fsync (see module docstring)."""
    sector_size = table.sector_size
    table.check(store.size // sector_size)
    entries = table.entries_bytes()
    entries += bytes(-len(entries) % sector_size)  # the array's last sector is ours too
    for role in (CopyRole.BACKUP, CopyRole.PRIMARY):
        header = table.header_for(role)
        store.write(header.entries_lba * sector_size, entries)
        store.write(header.my_lba * sector_size, header.pack(sector_size))
        store.flush()


EntriesChange = Callable[[tuple[GptEntry, ...]], Sequence[GptEntry]]


class GptDisk:
    """A disk's GPT: the state read at open, and writes that keep both copies consistent."""

    def __init__(self, store: BlockStore, *, sector_size: int = SECTOR_SIZE) -> None:
        self.store = store
        self.sector_size = sector_size
        self.state = read_state(store, sector_size=sector_size)

    @classmethod
    @contextmanager
    def open(
        cls, path: Path, *, writable: bool = False, sector_size: int = SECTOR_SIZE
    ) -> Iterator[GptDisk]:
        store = FileStore(path, writable=writable)
        try:
            yield cls(store, sector_size=sector_size)
        finally:
            store.close()

    @property
    def table(self) -> GptTable:
        return self.state.table

    def write(self, table: GptTable) -> DiskState:
        write_table(self.store, table)
        self.state = read_state(self.store, sector_size=self.sector_size)
        return self.state

    def update(self, change: EntriesChange) -> DiskState:
        """Apply ``change`` to the entries and write both copies; no write if nothing changes
        and both copies are already good (a normal boot must not write, spec §2.2)."""
        table = self.table.with_entries(change(self.table.entries))
        if table == self.table and not self.state.needs_repair:
            return self.state
        return self.write(table)

    def repair(self) -> DiskState:
        """Rewrite a damaged or stale copy from the one in use (``cgpt repair``)."""
        if not self.state.needs_repair:
            return self.state
        return self.write(self.table)
