"""The on-disk GPT format: protective MBR check, header and entry array, parse and serialize.

Pure: bytes in, frozen records out, and back, byte for byte. Layouts are the UEFI
specification's (UEFI 2.10 §5.2.3 "Protective MBR", §5.3.2 "GPT Header", §5.3.3 "GPT Partition
Entry Array"); the checks mirror what ``cgpt`` (``CheckHeader``/``CheckEntries`` in
``seismograph:src/firmware/lib/cgptlib/cgptlib_internal.c``) and ``sgdisk -v`` insist on, so a
table we accept is one they accept.

A disk holds two copies: the *primary* (header at LBA 1, entries from LBA 2) and the *backup*
(entries just before the header in the last LBA). :class:`GptTable` is what both copies share;
it produces either copy's header, so writing a table always writes two consistent copies.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from uuid import UUID

from railcar.gpt.errors import (
    BadSignatureError,
    EntriesCrcError,
    EntryLayoutError,
    HeaderCrcError,
    HeaderGeometryError,
    NoProtectiveMbrError,
    PartitionNotFoundError,
    UnsupportedHeaderError,
)

SECTOR_SIZE = 512  # scripts:build_library/disk_layout.json "block_size": 512
# UEFI 2.10 §5.3.2 Table 5.21: signature, revision 1.0, HeaderSize >= 92, all little-endian.
SIGNATURE = b"EFI PART"
REVISION = 0x00010000
HEADER_SIZE = 92
# UEFI 2.10 §5.3.3: SizeOfPartitionEntry is 128 * 2^n; cgpt (cgptlib_internal.c CheckHeader)
# and every tool Flatcar uses write 128, so that is the only size we read.
ENTRY_SIZE = 128
PRIMARY_HEADER_LBA = 1
PRIMARY_ENTRIES_LBA = 2  # where cgpt/sgdisk put the primary array, and where repair rebuilds it
# Our own cap: 128 entries is universal; refuse headers that would make us read megabytes.
MAX_ENTRIES = 4096
# UEFI 2.10 §5.2.3 Table 5.4: MBR boot signature at byte 510, four 16-byte partition records
# from byte 446, OSType at offset 4 of each; 0xEE marks the protective (GPT) record.
MBR_SIGNATURE = b"\x55\xaa"
MBR_PARTITIONS_OFFSET = 446
PROTECTIVE_OS_TYPE = 0xEE
NAME_BYTES = 72  # UEFI 2.10 Table 5.22 PartitionName: 36 UTF-16LE code units

# Signature, Revision, HeaderSize, HeaderCRC32, Reserved, MyLBA, AlternateLBA, FirstUsableLBA,
# LastUsableLBA, DiskGUID, PartitionEntryLBA, NumberOfPartitionEntries,
# SizeOfPartitionEntry, PartitionEntryArrayCRC32 (UEFI 2.10 Table 5.21).
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
# PartitionTypeGUID, UniquePartitionGUID, StartingLBA, EndingLBA, Attributes, PartitionName.
_ENTRY = struct.Struct("<16s16sQQQ72s")
_HEADER_CRC_OFFSET = 16
assert _HEADER.size == HEADER_SIZE and _ENTRY.size == ENTRY_SIZE


class CopyRole(StrEnum):
    PRIMARY = "primary"
    BACKUP = "backup"


def crc32(data: bytes) -> int:
    """The CRC-32 UEFI uses (IEEE 802.3 polynomial, reflected, final XOR) — zlib's."""
    return zlib.crc32(data) & 0xFFFFFFFF


def check_protective_mbr(sector0: bytes) -> None:
    """Raise unless sector 0 ends in 0x55AA and has a 0xEE record (a hybrid MBR counts)."""
    found_sig = sector0[510:512]
    if found_sig != MBR_SIGNATURE:
        raise NoProtectiveMbrError(
            f"sector 0 ends in {found_sig.hex() or 'nothing'}, expected MBR signature 55aa"
        )
    types = [sector0[MBR_PARTITIONS_OFFSET + 16 * i + 4] for i in range(4)]
    if PROTECTIVE_OS_TYPE not in types:
        found = ", ".join(f"{t:#04x}" for t in types)
        raise NoProtectiveMbrError(f"MBR partition types are {found}, expected one to be 0xee")


def protective_mbr(disk_sectors: int, sector_size: int = SECTOR_SIZE) -> bytes:
    """A fresh protective MBR covering the disk (UEFI 2.10 Table 5.5), as sgdisk writes it."""
    size = min(disk_sectors - 1, 0xFFFFFFFF)
    # Boot indicator 0, start CHS 000200, type 0xEE, end CHS ffffff, start LBA 1, size in LBA.
    record = bytes([0x00, 0x00, 0x02, 0x00, PROTECTIVE_OS_TYPE, 0xFF, 0xFF, 0xFF])
    record += struct.pack("<II", 1, size)
    sector = bytearray(sector_size)
    sector[MBR_PARTITIONS_OFFSET : MBR_PARTITIONS_OFFSET + 16] = record
    sector[510:512] = MBR_SIGNATURE
    return bytes(sector)


@dataclass(frozen=True)
class GptHeader:
    """One copy's header. The header CRC is not stored: :meth:`pack` computes it."""

    my_lba: int
    alternate_lba: int
    first_usable_lba: int
    last_usable_lba: int
    disk_guid: UUID
    entries_lba: int
    num_entries: int
    entries_crc32: int
    entry_size: int = ENTRY_SIZE
    revision: int = REVISION
    reserved: int = 0
    extra: bytes = b""  # bytes between 92 and HeaderSize, covered by the CRC; kept as found

    @property
    def role(self) -> CopyRole:
        return CopyRole.PRIMARY if self.my_lba < self.alternate_lba else CopyRole.BACKUP

    @property
    def header_size(self) -> int:
        return HEADER_SIZE + len(self.extra)

    def entries_sectors(self, sector_size: int = SECTOR_SIZE) -> int:
        return -(-self.num_entries * self.entry_size // sector_size)

    def _fields(self, header_crc: int) -> bytes:
        return (
            _HEADER.pack(
                SIGNATURE,
                self.revision,
                self.header_size,
                header_crc,
                self.reserved,
                self.my_lba,
                self.alternate_lba,
                self.first_usable_lba,
                self.last_usable_lba,
                self.disk_guid.bytes_le,  # UEFI GUIDs: first three fields little-endian
                self.entries_lba,
                self.num_entries,
                self.entry_size,
                self.entries_crc32,
            )
            + self.extra
        )

    @property
    def crc32(self) -> int:
        """UEFI 2.10 Table 5.21: CRC32 of HeaderSize bytes with the CRC field itself zeroed."""
        return crc32(self._fields(0))

    def pack(self, sector_size: int = SECTOR_SIZE) -> bytes:
        """The whole header sector, zero-padded."""
        return self._fields(self.crc32).ljust(sector_size, b"\0")


def parse_header(
    sector: bytes, *, lba: int, disk_sectors: int, sector_size: int = SECTOR_SIZE
) -> GptHeader:
    """Parse and check the header sector read at ``lba`` of a disk of ``disk_sectors``."""
    if len(sector) < HEADER_SIZE:
        raise HeaderGeometryError(f"LBA {lba}: read {len(sector)} bytes, expected a full header")
    (
        signature,
        revision,
        header_size,
        header_crc,
        reserved,
        my_lba,
        alternate_lba,
        first_usable,
        last_usable,
        disk_guid,
        entries_lba,
        num_entries,
        entry_size,
        entries_crc,
    ) = _HEADER.unpack_from(sector)
    if signature != SIGNATURE:
        raise BadSignatureError(
            f"LBA {lba}: header starts with {signature!r}, expected {SIGNATURE!r}"
        )
    if revision != REVISION:
        raise UnsupportedHeaderError(
            f"LBA {lba}: header revision {revision:#010x}, expected {REVISION:#010x}"
        )
    if not HEADER_SIZE <= header_size <= min(sector_size, len(sector)):
        raise UnsupportedHeaderError(
            f"LBA {lba}: header size {header_size}, expected {HEADER_SIZE} to {sector_size}"
        )
    header = GptHeader(
        my_lba=my_lba,
        alternate_lba=alternate_lba,
        first_usable_lba=first_usable,
        last_usable_lba=last_usable,
        disk_guid=UUID(bytes_le=disk_guid),
        entries_lba=entries_lba,
        num_entries=num_entries,
        entries_crc32=entries_crc,
        entry_size=entry_size,
        revision=revision,
        reserved=reserved,
        extra=bytes(sector[HEADER_SIZE:header_size]),
    )
    if header.crc32 != header_crc:
        raise HeaderCrcError(
            f"LBA {lba}: header CRC32 is {header_crc:#010x}, its bytes give {header.crc32:#010x}"
        )
    if entry_size != ENTRY_SIZE:
        raise UnsupportedHeaderError(f"LBA {lba}: entry size {entry_size}, expected {ENTRY_SIZE}")
    if not 1 <= num_entries <= MAX_ENTRIES:
        raise UnsupportedHeaderError(
            f"LBA {lba}: {num_entries} partition entries, expected 1 to {MAX_ENTRIES}"
        )
    if my_lba != lba:
        raise HeaderGeometryError(f"header read at LBA {lba} says it is at LBA {my_lba}")
    check_geometry(header, disk_sectors=disk_sectors, sector_size=sector_size)
    return header


def check_geometry(header: GptHeader, *, disk_sectors: int, sector_size: int = SECTOR_SIZE) -> None:
    """The LBAs must fit the disk and keep header, entries and partitions apart."""
    last = disk_sectors - 1
    where = f"{header.role} header at LBA {header.my_lba}"

    def bad(what: str) -> HeaderGeometryError:
        return HeaderGeometryError(f"{where}: {what} (disk has LBAs 0 to {last})")

    if header.alternate_lba == header.my_lba or header.alternate_lba > last:
        raise bad(f"alternate LBA {header.alternate_lba} is not another sector of the disk")
    if not header.first_usable_lba <= header.last_usable_lba:
        raise bad(
            f"first usable LBA {header.first_usable_lba} is after last {header.last_usable_lba}"
        )
    low, high = sorted((header.my_lba, header.alternate_lba))
    if header.first_usable_lba <= low or header.last_usable_lba >= high:
        raise bad(
            f"usable LBAs {header.first_usable_lba}-{header.last_usable_lba}"
            f" overlap the headers at {low} and {high}"
        )
    entries_end = header.entries_lba + header.entries_sectors(sector_size) - 1
    if header.role is CopyRole.PRIMARY:
        ok = header.my_lba < header.entries_lba and entries_end < header.first_usable_lba
    else:
        ok = header.last_usable_lba < header.entries_lba and entries_end < header.my_lba
    if not ok:
        raise bad(
            f"entry array at LBAs {header.entries_lba}-{entries_end} overlaps the header"
            f" or the usable LBAs {header.first_usable_lba}-{header.last_usable_lba}"
        )


@dataclass(frozen=True)
class GptEntry:
    """One partition entry. ``name`` keeps any bytes after the label's NUL, so packing is exact."""

    type_guid: UUID
    unique_guid: UUID
    first_lba: int
    last_lba: int
    attributes: int
    name: str

    @property
    def is_used(self) -> bool:
        return self.type_guid.int != 0  # UEFI 2.10 Table 5.22: zero type GUID = unused entry

    @property
    def label(self) -> str:
        return self.name.split("\0", 1)[0]

    @property
    def size_sectors(self) -> int:
        return self.last_lba - self.first_lba + 1

    def pack(self) -> bytes:
        name = self.name.encode("utf-16-le", "surrogatepass")
        if len(name) > NAME_BYTES:
            raise EntryLayoutError(
                f"partition name {self.label!r} is {len(name)} bytes in UTF-16, at most 72 fit"
            )
        return _ENTRY.pack(
            self.type_guid.bytes_le,
            self.unique_guid.bytes_le,
            self.first_lba,
            self.last_lba,
            self.attributes,
            name.ljust(NAME_BYTES, b"\0"),
        )

    @classmethod
    def parse(cls, data: bytes) -> GptEntry:
        type_guid, unique_guid, first, last, attributes, name = _ENTRY.unpack(data)
        return cls(
            type_guid=UUID(bytes_le=type_guid),
            unique_guid=UUID(bytes_le=unique_guid),
            first_lba=first,
            last_lba=last,
            attributes=attributes,
            # surrogatepass makes any 72 bytes decode and encode back unchanged.
            name=name.decode("utf-16-le", "surrogatepass").rstrip("\0"),
        )


def pack_entries(entries: Iterable[GptEntry]) -> bytes:
    return b"".join(e.pack() for e in entries)


def parse_entries(data: bytes, header: GptHeader) -> tuple[GptEntry, ...]:
    """Check the array against the header's CRC32 and parse every entry, used or not."""
    size = header.num_entries * header.entry_size
    array = data[:size]
    if len(array) < size:
        raise EntriesCrcError(
            f"{header.role} entry array at LBA {header.entries_lba}: read {len(array)} bytes,"
            f" expected {size}"
        )
    found = crc32(array)
    if found != header.entries_crc32:
        raise EntriesCrcError(
            f"{header.role} entry array at LBA {header.entries_lba}: CRC32 is {found:#010x},"
            f" header expects {header.entries_crc32:#010x}"
        )
    entries = tuple(
        GptEntry.parse(array[i : i + ENTRY_SIZE]) for i in range(0, size, header.entry_size)
    )
    check_entries(entries, header)
    return entries


def check_entries(entries: Sequence[GptEntry], header: GptHeader) -> None:
    """Used partitions lie in the usable range, in order, without overlap or duplicate GUIDs."""
    used = sorted(
        ((n, e) for n, e in enumerate(entries, start=1) if e.is_used), key=lambda p: p[1].first_lba
    )
    for number, entry in used:
        if not (
            header.first_usable_lba <= entry.first_lba <= entry.last_lba <= header.last_usable_lba
        ):
            raise EntryLayoutError(
                f"partition {number} spans LBAs {entry.first_lba}-{entry.last_lba}, expected"
                f" within {header.first_usable_lba}-{header.last_usable_lba}"
            )
    for (n1, e1), (n2, e2) in itertools.pairwise(used):
        if e2.first_lba <= e1.last_lba:
            raise EntryLayoutError(
                f"partition {n2} (LBAs {e2.first_lba}-{e2.last_lba}) overlaps partition {n1}"
                f" (LBAs {e1.first_lba}-{e1.last_lba})"
            )
    seen: dict[UUID, int] = {}
    for number, entry in used:
        if entry.unique_guid in seen:
            raise EntryLayoutError(
                f"partitions {seen[entry.unique_guid]} and {number} share the unique GUID"
                f" {entry.unique_guid}"
            )
        seen[entry.unique_guid] = number


@dataclass(frozen=True)
class GptTable:
    """What both copies of a GPT share. ``header`` is the primary's; the backup's is derived."""

    header: GptHeader
    backup_entries_lba: int
    entries: tuple[GptEntry, ...]
    sector_size: int = SECTOR_SIZE

    @classmethod
    def from_copy(
        cls, header: GptHeader, entries: Sequence[GptEntry], *, sector_size: int = SECTOR_SIZE
    ) -> GptTable:
        """The table one valid copy describes, with the other copy where cgpt repair puts it."""
        if header.role is CopyRole.PRIMARY:
            backup_entries = header.alternate_lba - header.entries_sectors(sector_size)
            primary = header
        else:
            backup_entries = header.entries_lba
            primary = replace(
                header,
                my_lba=header.alternate_lba,
                alternate_lba=header.my_lba,
                entries_lba=PRIMARY_ENTRIES_LBA,
            )
        return cls(primary, backup_entries, tuple(entries), sector_size)

    @property
    def disk_guid(self) -> UUID:
        return self.header.disk_guid

    def entries_bytes(self) -> bytes:
        return pack_entries(self.entries)

    def _with_crc(self, header: GptHeader) -> GptHeader:
        return replace(header, entries_crc32=crc32(self.entries_bytes()))

    def header_for(self, role: CopyRole) -> GptHeader:
        if role is CopyRole.PRIMARY:
            return self._with_crc(self.header)
        return self._with_crc(
            replace(
                self.header,
                my_lba=self.header.alternate_lba,
                alternate_lba=self.header.my_lba,
                entries_lba=self.backup_entries_lba,
            )
        )

    def with_entries(self, entries: Sequence[GptEntry]) -> GptTable:
        if len(entries) != len(self.entries):
            raise EntryLayoutError(
                f"{len(entries)} entries given, the table has {len(self.entries)}"
            )
        return replace(self, entries=tuple(entries))

    def with_backup_at(self, lba: int) -> GptTable:
        """The same table with the backup header at ``lba`` (e.g. the end of a grown disk)."""
        return replace(
            self,
            header=replace(self.header, alternate_lba=lba),
            backup_entries_lba=lba - self.header.entries_sectors(self.sector_size),
        )

    def check(self, disk_sectors: int) -> None:
        """Both derived copies pass the checks a reader applies; raise otherwise."""
        for role in CopyRole:
            header = self.header_for(role)
            check_geometry(header, disk_sectors=disk_sectors, sector_size=self.sector_size)
        check_entries(self.entries, self.header)

    def partition(self, number: int) -> GptEntry:
        """Partition ``number`` (1-based, as ``cgpt -i``); it must be in use."""
        if not 1 <= number <= len(self.entries) or not self.entries[number - 1].is_used:
            raise PartitionNotFoundError(
                f"no partition {number}: used partitions are"
                f" {', '.join(str(n) for n in self.used_numbers()) or 'none'}"
            )
        return self.entries[number - 1]

    def used_numbers(self) -> list[int]:
        return [n for n, e in enumerate(self.entries, start=1) if e.is_used]

    def find(self, *, label: str | None = None, unique_guid: UUID | None = None) -> int:
        """The number of the one partition with this label or unique GUID."""
        matches = [
            n
            for n, e in enumerate(self.entries, start=1)
            if e.is_used
            and (label is None or e.label == label)
            and (unique_guid is None or e.unique_guid == unique_guid)
        ]
        wanted = " and ".join(
            w
            for w in (
                f"label {label!r}" if label is not None else "",
                f"GUID {unique_guid}" if unique_guid is not None else "",
            )
            if w
        )
        if len(matches) != 1:
            found = "none" if not matches else f"partitions {matches}"
            raise PartitionNotFoundError(f"expected one partition with {wanted}, found {found}")
        return matches[0]
