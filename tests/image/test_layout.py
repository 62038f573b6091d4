"""The Container Linux partition layout and the verity geometry, held to sfdisk, sgdisk and cgpt."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import subprocess
from pathlib import Path

import pytest

from railcar.gpt import USR_A_UUID, USR_B_UUID, PartitionType
from railcar.image.disk import assemble, copy_sparse, sparse_digest
from railcar.image.layout import disk_layout, hash_tree_blocks, verity_geometry
from railcar.image.rootfs import prune_cache
from railcar.image.spec import parse_spec
from tests.image.small import SMALL


def test_flatcar_usr_geometry() -> None:
    # spec §3: 1 GiB USR partition, data 260094 blocks, hash tree at 1,065,345,024 bytes,
    # 2049 hash blocks (2032 + 16 + 1) plus the superblock fill it exactly.
    g = verity_geometry(1 << 30)
    assert g.data_blocks == 260094
    assert g.hash_offset == 1_065_345_024
    assert g.hash_blocks == 2049
    assert g.data_blocks + 1 + g.hash_blocks == (1 << 30) // 4096


def test_hash_tree_levels() -> None:
    assert hash_tree_blocks(1) == 1
    assert hash_tree_blocks(128) == 1
    assert hash_tree_blocks(129) == 3  # two leaves and a root


def test_flatcar_offsets_for_the_old_layout() -> None:
    # spec §1.1 "older layout": first LBAs of the default (old-size) partitions.
    layout = disk_layout(parse_spec('[image]\nversion = "1"\n[partitions]\nroot = 2162\n'))
    starts = {p.number: p.start for p in layout.partitions}
    assert starts == {
        1: 4096, 2: 266240, 3: 270336, 4: 2367488, 6: 4464640, 7: 4726784, 9: 4857856,
    }  # fmt: skip


def _sgdisk_info(disk: Path, number: int) -> str:
    return subprocess.run(
        ["sgdisk", "-i", str(number), str(disk)], capture_output=True, text=True, check=True
    ).stdout


def _cgpt(disk: Path, *args: str) -> str:
    return subprocess.run(
        ["cgpt", "show", *args, str(disk)], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_table_matches_sgdisk_and_cgpt(tmp_path: Path) -> None:
    spec = parse_spec(SMALL)
    layout = disk_layout(spec)
    disk = assemble(layout, {}, tmp_path / "disk.bin")
    subprocess.run(["sgdisk", "-v", str(disk)], check=True, capture_output=True)
    expected = {
        1: ("EFI-SYSTEM", PartitionType.EFI),
        2: ("BIOS-BOOT", PartitionType.BIOS),
        3: ("USR-A", PartitionType.FLATCAR_USR),
        4: ("USR-B", PartitionType.FLATCAR_USR),
        6: ("OEM", PartitionType.LINUX_DATA),
        7: ("OEM-CONFIG", PartitionType.FLATCAR_RESERVED),
        9: ("ROOT", PartitionType.FLATCAR_RESIZE),
    }
    for number, (label, ptype) in expected.items():
        info = _sgdisk_info(disk, number)
        assert f"Partition name: '{label}'" in info
        assert f"Partition GUID code: {str(ptype.guid).upper()}" in info
    for number in (5, 8):
        assert "does not exist" in _sgdisk_info(disk, number)
    assert f"Partition unique GUID: {str(USR_A_UUID).upper()}" in _sgdisk_info(disk, 3)
    assert f"Partition unique GUID: {str(USR_B_UUID).upper()}" in _sgdisk_info(disk, 4)
    assert (
        "Disk identifier (GUID): 00000000-0000-0000-0000-000000000001"
        in subprocess.run(
            ["sgdisk", "-p", str(disk)], capture_output=True, text=True, check=True
        ).stdout
    )
    # Fresh Flatcar image (spec §1.3): USR-A priority 1 tries 0 successful 1; USR-B all zero.
    assert (_cgpt(disk, "-i", "3", "-P"), _cgpt(disk, "-i", "3", "-T")) == ("1", "0")
    assert _cgpt(disk, "-i", "3", "-S") == "1"
    assert _cgpt(disk, "-i", "4", "-A") == "0"
    # Partition starts are 2 MiB aligned, as disk_layout.json's part_alignment.
    assert all(p.start % 4096 == 0 for p in layout.partitions)


def test_copy_sparse_writes_only_data(tmp_path: Path) -> None:
    src = tmp_path / "part.img"
    with open(src, "wb") as f:
        f.truncate(4 << 20)
        f.seek(1 << 20)
        f.write(b"x" * 4096)
    dest = tmp_path / "disk"
    with open(dest, "wb") as f:
        f.truncate(8 << 20)
    assert copy_sparse(src, dest, 2 << 20, 4 << 20) == 4096
    data = dest.read_bytes()
    assert data[(3 << 20) : (3 << 20) + 4096] == b"x" * 4096
    assert data.count(0) == len(data) - 4096


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_copy_sparse_copies_every_extent_and_keeps_holes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool
) -> None:
    """Extents larger than a chunk, at odd offsets, into a disk holding other data; by
    copy_file_range, and by the fallback where the kernel cannot copy (EXDEV)."""
    if not kernel_copy:

        def cross_device(*_: object) -> int:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", cross_device)
    rng = random.Random(5)
    first, second = rng.randbytes(9 << 20), rng.randbytes(12288)
    src = tmp_path / "part.img"
    with open(src, "wb") as f:
        f.truncate(32 << 20)
        f.seek(4096)
        f.write(first)
        f.seek(24 << 20)
        f.write(second)
    dest = tmp_path / "disk"
    with open(dest, "wb") as f:
        f.truncate(40 << 20)
        f.seek(39 << 20)
        f.write(b"backup table")
    assert copy_sparse(src, dest, 1 << 20, 32 << 20) == len(first) + len(second)
    expected = bytearray(40 << 20)
    expected[(1 << 20) + 4096 : (1 << 20) + 4096 + len(first)] = first
    expected[(25 << 20) : (25 << 20) + len(second)] = second
    expected[39 << 20 : (39 << 20) + 12] = b"backup table"
    assert dest.read_bytes() == bytes(expected)
    # the hole between the two extents stays a hole in the disk
    with open(dest, "rb") as disk:
        assert os.lseek(disk.fileno(), (12 << 20), os.SEEK_DATA) == 25 << 20


@pytest.mark.parametrize("algo", ["sha256", "sha512"])
def test_sparse_digest_is_the_files_digest(tmp_path: Path, algo: str) -> None:
    """Holes at the start, between data, inside the 8 MiB chunk and at the end; data that is
    itself zeros; a file with no holes; an empty file: each the same as reading every byte."""
    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as f:
        f.truncate(40 << 20)
        for offset, data in ((3 << 20, b"A" * 5000), (9 << 20, bytes(4096)), (20 << 20, b"Z")):
            f.seek(offset)
            f.write(data)
    dense = tmp_path / "dense.bin"
    dense.write_bytes(bytes(range(256)) * 40_000)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    for path in (sparse, dense, empty):
        with open(path, "rb") as f:
            assert sparse_digest(path, algo) == hashlib.file_digest(f, algo).hexdigest()
    # the sparse file really has holes, so the test covers them
    assert sparse.stat().st_blocks * 512 < 1 << 20


def test_prune_cache_keeps_the_newest(tmp_path: Path) -> None:
    import os

    for i, name in enumerate(["a", "b", "c", ".x.partial"]):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    prune_cache(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.partial", "b", "c"]
