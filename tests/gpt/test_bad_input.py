"""Disks that are not GPT disks, cut short, or inconsistent raise our typed errors, and the CLI
reports each on one line."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from railcar.cli import cli
from railcar.gpt import GptDisk
from railcar.gpt.disk import read_state
from railcar.gpt.errors import (
    BadSignatureError,
    EntryLayoutError,
    GptError,
    HeaderCrcError,
    HeaderGeometryError,
    NotGptDiskError,
    PartitionNotFoundError,
    TruncatedDiskError,
    UnsupportedHeaderError,
)
from railcar.gpt.table import check_entries, check_protective_mbr, parse_header
from tests.gpt.tools import MemoryStore

SECTOR = 512


def _primary_sector(pristine_image: Path) -> bytes:
    return pristine_image.read_bytes()[SECTOR : 2 * SECTOR]


def _open(path: Path) -> None:
    with GptDisk.open(path):
        pass


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (bytes(1 << 20), NotGptDiskError, "neither LBA 1 nor LBA 2047"),
        (b"#!/bin/sh\necho hello\n" * 200, NotGptDiskError, "starts with b'EFI PART'"),
        (b"", TruncatedDiskError, "0 bytes, expected at least 2048"),
        (bytes(1500), TruncatedDiskError, "1500 bytes"),
    ],
)
def test_not_a_gpt_disk(
    tmp_path: Path, content: bytes, error: type[GptError], message: str
) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        _open(path)


def test_an_image_cut_short_says_so(pristine_image: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.img"
    path.write_bytes(pristine_image.read_bytes()[: 1 << 20])
    with pytest.raises(TruncatedDiskError, match=r"backup header at LBA 65535, expected at least"):
        _open(path)


def test_header_checks_name_expected_and_found(pristine_image: Path) -> None:
    good = _primary_sector(pristine_image)
    disk_sectors = pristine_image.stat().st_size // SECTOR
    with pytest.raises(BadSignatureError, match="expected b'EFI PART'"):
        parse_header(b"EFI FART" + good[8:], lba=1, disk_sectors=disk_sectors)
    with pytest.raises(HeaderCrcError, match=r"CRC32 is 0x[0-9a-f]{8}, its bytes give"):
        parse_header(good[:60] + b"\xff" + good[61:], lba=1, disk_sectors=disk_sectors)
    with pytest.raises(HeaderGeometryError, match="says it is at LBA 1"):
        parse_header(good, lba=7, disk_sectors=disk_sectors)
    with pytest.raises(HeaderGeometryError, match="alternate LBA 65535"):
        parse_header(good, lba=1, disk_sectors=1000)
    revision = good[:8] + struct.pack("<I", 0x00020000) + good[12:]
    with pytest.raises(UnsupportedHeaderError, match="revision 0x00020000, expected 0x00010000"):
        parse_header(revision, lba=1, disk_sectors=disk_sectors)


def test_overlapping_partitions_are_refused(pristine_image: Path) -> None:
    state = read_state(MemoryStore(bytearray(pristine_image.read_bytes())))
    entries = list(state.table.entries)
    entries[3] = replace(entries[3], first_lba=entries[2].last_lba)
    with pytest.raises(EntryLayoutError, match=r"partition 4 .* overlaps partition 3"):
        check_entries(entries, state.table.header)
    entries[3] = replace(entries[2], first_lba=10)
    with pytest.raises(EntryLayoutError, match="expected within 34-"):
        check_entries(entries, state.table.header)


def test_missing_protective_mbr_is_reported_not_fatal(image: Path) -> None:
    with open(image, "r+b") as f:
        f.write(bytes(SECTOR))
    with GptDisk.open(image) as disk:
        assert disk.state.mbr_problem == "sector 0 ends in 0000, expected MBR signature 55aa"
    with pytest.raises(GptError, match="MBR partition types are 0x00, 0x00, 0x00, 0x00"):
        check_protective_mbr(bytes(510) + b"\x55\xaa")


def test_unknown_partition_names(image: Path) -> None:
    with GptDisk.open(image) as disk:
        with pytest.raises(PartitionNotFoundError, match="no partition 5: used partitions"):
            disk.table.partition(5)
        with pytest.raises(PartitionNotFoundError, match="label 'USR-C', found none"):
            disk.table.find(label="USR-C")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show"], "no GPT: neither LBA 1 nor LBA 2047"),
        (["next"], "no GPT"),
        (["prioritize", "-i", "3"], "no GPT"),
    ],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, cli_runner: CliRunner, args: list[str], message: str
) -> None:
    path = tmp_path / "zeros.img"
    path.write_bytes(bytes(1 << 20))
    result = cli_runner.invoke(cli, ["gpt", args[0], str(path), *args[1:]])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("railcar: error: ") and message in lines[0]
    assert len(lines) <= 2 and all(line.startswith(("railcar:", "hint:")) for line in lines)
