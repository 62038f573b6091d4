"""Where everything goes on a Railcar disk: partitions, the verity hash tree, derived ids. Pure.

Partition table (spec §1.1, ``scripts:build_library/disk_layout.json``): 1 EFI-SYSTEM, 2
BIOS-BOOT, 3 USR-A, 4 USR-B, 6 OEM, 7 OEM-CONFIG, 9 ROOT — numbers 5 and 8 stay empty as in
Flatcar. Partitions start on 2 MiB boundaries (disk_layout.json ``part_alignment`` 4096 blocks);
the first at LBA 4096.

USR partition (spec §3, ``disk_util Verity()``): the filesystem, then the dm-verity hash tree
(superblock first) at a fixed offset, filling the partition. For Flatcar's 1 GiB partition the
offset is 260094 × 4 KiB = 1,065,345,024 bytes, as :func:`verity_geometry` computes.

Ids that Flatcar draws at random (partition UUIDs other than USR-A/B, the erofs UUID, the verity
salt) are derived from the image's name, version and SOURCE_DATE_EPOCH, so that two builds of the
same spec and packages are byte-identical.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from uuid import UUID

from railcar.gpt import USR_A_UUID, USR_B_UUID, GptPrio, PartitionType
from railcar.gpt.partition_type import BUILD_DISK_GUID
from railcar.image.spec import ImageSpec

SECTOR = 512
MIB = 1 << 20
# disk_layout.json: part_alignment 4096 blocks of 512 bytes.
ALIGN_SECTORS = 4096
# A GPT copy: header sector + 32 sectors of 128 entries x 128 bytes (disk_util
# GPT_RESERVED_SECTORS is 34 with the protective MBR).
GPT_SECTORS = 33
VERITY_BLOCK = 4096
_SHA256 = 32


@dataclass(frozen=True)
class VerityGeometry:
    """A USR partition: ``data_blocks`` of filesystem, then the hash tree at ``hash_offset``."""

    partition_bytes: int
    data_blocks: int
    hash_blocks: int

    @property
    def hash_offset(self) -> int:
        return self.data_blocks * VERITY_BLOCK

    @property
    def data_bytes(self) -> int:
        return self.hash_offset


def hash_tree_blocks(data_blocks: int, block: int = VERITY_BLOCK) -> int:
    """Hash blocks dm-verity needs for ``data_blocks`` (every level, up to a single root block)."""
    per_block = block // _SHA256
    total, level = 0, data_blocks
    while True:
        level = -(-level // per_block)
        total += level
        if level == 1:
            return total


def verity_geometry(partition_bytes: int) -> VerityGeometry:
    """The most data blocks whose hash tree (plus its superblock) still fits the partition."""
    blocks = partition_bytes // VERITY_BLOCK
    data = blocks - 2
    while data > 0 and data + 1 + hash_tree_blocks(data) > blocks:
        data -= 1
    if data <= 0:
        raise ValueError(f"a {partition_bytes}-byte partition cannot hold a verity hash tree")
    return VerityGeometry(partition_bytes, data, hash_tree_blocks(data))


@dataclass(frozen=True)
class Partition:
    number: int
    label: str
    type: PartitionType
    uuid: UUID
    start: int  # sectors
    size: int  # sectors
    prio: GptPrio | None = None

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def size_bytes(self) -> int:
        return self.size * SECTOR


@dataclass(frozen=True)
class DiskLayout:
    disk_guid: UUID
    partitions: tuple[Partition, ...]
    total_sectors: int

    def by_label(self, label: str) -> Partition:
        for p in self.partitions:
            if p.label == label:
                return p
        raise KeyError(label)

    @property
    def size_bytes(self) -> int:
        return self.total_sectors * SECTOR


def derived_uuid(spec: ImageSpec, purpose: str) -> UUID:
    """A stable UUID for ``purpose`` (a partition, the erofs superblock, …) of this image."""
    seed = f"railcar:{spec.name}:{spec.version}:{spec.source_date_epoch}:{purpose}"
    return uuid.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16], version=4)


def verity_salt(spec: ImageSpec) -> str:
    """The hex salt of the verity superblock (32 bytes, like cryptsetup's random default)."""
    seed = f"railcar:{spec.name}:{spec.version}:{spec.source_date_epoch}:verity-salt"
    return hashlib.sha256(seed.encode()).hexdigest()


def _align(sector: int) -> int:
    return -(-sector // ALIGN_SECTORS) * ALIGN_SECTORS


# Initial gptprio (spec §1.3, disk_util WritePartitionTable): USR-A P1 S1, USR-B all zero.
FRESH_USR_A = GptPrio(priority=1, tries=0, successful=True)
FRESH_USR_B = GptPrio()


def disk_layout(spec: ImageSpec) -> DiskLayout:
    """The partition table of a fresh image built from ``spec``."""
    sizes = spec.partitions
    rows: list[tuple[int, str, PartitionType, int, UUID | None, GptPrio | None]] = [
        (1, "EFI-SYSTEM", PartitionType.EFI, sizes.esp, None, None),
        (2, "BIOS-BOOT", PartitionType.BIOS, sizes.bios_boot, None, None),
        (3, "USR-A", PartitionType.FLATCAR_USR, sizes.usr, USR_A_UUID, FRESH_USR_A),
        (4, "USR-B", PartitionType.FLATCAR_USR, sizes.usr, USR_B_UUID, FRESH_USR_B),
        (6, "OEM", PartitionType.LINUX_DATA, sizes.oem, None, None),
        (7, "OEM-CONFIG", PartitionType.FLATCAR_RESERVED, sizes.oem_config, None, None),
        (9, "ROOT", PartitionType.FLATCAR_RESIZE, sizes.root, None, None),
    ]
    partitions = []
    start = ALIGN_SECTORS
    for number, label, ptype, mib, fixed, prio in rows:
        size = mib * MIB // SECTOR
        partitions.append(
            Partition(
                number=number,
                label=label,
                type=ptype,
                uuid=fixed or derived_uuid(spec, f"partition-{label}"),
                start=start,
                size=size,
                prio=prio,
            )
        )
        start = _align(start + size)
    end = partitions[-1].start + partitions[-1].size
    total = -(-(end + GPT_SECTORS) * SECTOR // MIB) * MIB // SECTOR
    return DiskLayout(BUILD_DISK_GUID, tuple(partitions), total)


def sfdisk_script(layout: DiskLayout) -> str:
    """The layout as an ``sfdisk`` script (gptprio bits as ``GUID:`` attribute bit numbers)."""
    lines = [
        "label: gpt",
        f"label-id: {str(layout.disk_guid).upper()}",
        "unit: sectors",
        "first-lba: 34",
        "",
    ]
    for p in layout.partitions:
        attrs = ""
        if p.prio is not None:
            bits = p.prio.to_attributes()
            numbers = [str(b) for b in range(48, 64) if bits >> b & 1]
            if numbers:
                attrs = f', attrs="GUID:{",".join(numbers)}"'
        lines.append(
            f"{p.number} : start={p.start}, size={p.size}, type={str(p.type.guid).upper()},"
            f' uuid={str(p.uuid).upper()}, name="{p.label}"{attrs}'
        )
    return "\n".join(lines) + "\n"
