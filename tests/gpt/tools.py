"""Flatcar-shaped disk images made by sgdisk, the real tools that check them, and in-memory
block stores for power-cut tests."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from railcar.gpt import USR_A_UUID, USR_B_UUID, GptPrio, PartitionType
from railcar.gpt.partition_type import BUILD_DISK_GUID

MIB = 1 << 20
IMAGE_MIB = 32


@dataclass(frozen=True)
class PartitionSpec:
    number: int
    label: str
    type: PartitionType
    mib: int  # 0: the rest of the disk
    uuid: str | None = None
    attributes: tuple[int, ...] = ()  # attribute bits to set


# spec §1.1, scaled down; USR-A starts as disk_util leaves it: priority 1, successful (§1.3).
FLATCAR_LAYOUT = (
    PartitionSpec(1, "EFI-SYSTEM", PartitionType.EFI, 4),
    PartitionSpec(2, "BIOS-BOOT", PartitionType.BIOS, 1),
    PartitionSpec(3, "USR-A", PartitionType.FLATCAR_USR, 8, str(USR_A_UUID), (48, 56)),
    PartitionSpec(4, "USR-B", PartitionType.FLATCAR_USR, 8, str(USR_B_UUID)),
    PartitionSpec(6, "OEM", PartitionType.LINUX_DATA, 4),
    PartitionSpec(7, "OEM-CONFIG", PartitionType.FLATCAR_RESERVED, 2),
    PartitionSpec(9, "ROOT", PartitionType.FLATCAR_RESIZE, 0),
)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/setup (apt-get install cgpt gdisk)")
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True)


def make_image(
    path: Path, layout: tuple[PartitionSpec, ...] = FLATCAR_LAYOUT, mib: int = IMAGE_MIB
) -> Path:
    """A GPT disk image laid out like Flatcar's, written by sgdisk."""
    with open(path, "wb") as f:
        f.truncate(mib * MIB)
    args: list[str] = ["-U", str(BUILD_DISK_GUID)]
    for p in layout:
        size = f"+{p.mib}M" if p.mib else "0"
        args += [f"-n{p.number}:0:{size}", f"-t{p.number}:{p.type.value}"]
        args += [f"-c{p.number}:{p.label}"]
        if p.uuid:
            args += [f"-u{p.number}:{p.uuid}"]
        args += [f"-A{p.number}:set:{bit}" for bit in p.attributes]
    run(require_tool("sgdisk"), *args, path)
    return path


def cgpt_prio(disk: Path, number: int) -> GptPrio:
    """What Debian's cgpt reads for a partition's priority, tries and successful."""
    cgpt = require_tool("cgpt")
    values = []
    for flag in ("-P", "-T", "-S"):
        done = run(cgpt, "show", "-i", str(number), flag, disk)
        assert "WARNING" not in done.stderr, done.stderr
        values.append(int(done.stdout))
    return GptPrio(values[0], values[1], bool(values[2]))


def sgdisk_verify(disk: Path) -> str:
    """``sgdisk -v`` output; fails the test unless it reports no problems."""
    done = subprocess.run(
        [require_tool("sgdisk"), "-v", str(disk)], capture_output=True, text=True, check=False
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "No problems found" in out, out
    assert "CRC" not in out and "differ" not in out, out
    return out


@dataclass
class MemoryStore:
    """A :class:`~railcar.gpt.BlockStore` in memory that records writes and flushes."""

    data: bytearray
    events: list[tuple[int, bytes] | None] = field(default_factory=list)  # None = flush

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset : offset + length])

    def write(self, offset: int, data: bytes) -> None:
        self.events.append((offset, bytes(data)))
        self.data[offset : offset + len(data)] = data

    def flush(self) -> None:
        self.events.append(None)
