"""The PE section reader refuses what is not a unified kernel image (the happy path is checked
against objcopy on a built image in test_build.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from railcar.image.uki import UkiError, pe_checksum, pe_section, stamp_pe, uki_cmdline


def _pe(sections: dict[str, bytes]) -> bytes:
    """A minimal PE file: DOS header, signature, COFF header, no optional header, sections."""
    header = bytearray(0x40)
    header[:2] = b"MZ"
    struct.pack_into("<I", header, 0x3C, 0x40)
    coff = struct.pack("<HHIIIHH", 0x8664, len(sections), 0, 0, 0, 0, 0)
    table = b""
    data = b""
    start = 0x40 + 4 + len(coff) + 40 * len(sections)
    for name, body in sections.items():
        pointer = start + len(data)
        table += struct.pack("<8sIIIIIIHHI", name.encode(), len(body), 0, len(body), pointer,
                             0, 0, 0, 0, 0)  # fmt: skip
        data += body
    return bytes(header) + b"PE\0\0" + coff + table + data


def test_reads_the_embedded_command_line() -> None:
    image = _pe({".osrel": b"ID=railcar\n", ".cmdline": b"root=LABEL=ROOT rw\0"})
    assert uki_cmdline(image) == "root=LABEL=ROOT rw"
    assert pe_section(image, ".osrel") == b"ID=railcar\n"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"\x7fELF" + bytes(100), "no MZ header"),
        (b"MZ" + bytes(0x3A) + struct.pack("<I", 0x40) + b"NOPE", "no PE signature"),
        (_pe({".linux": b"kernel"}), "no .cmdline section"),
    ],
)
def test_not_a_uki(image: bytes, message: str) -> None:
    with pytest.raises(UkiError, match=message):
        uki_cmdline(image)


def _folded_word_sum(image: bytes, skip: int) -> int:
    """The PE checksum the slow way: word by word, carries folded back in at every step."""
    data = image[:skip] + bytes(4) + image[skip + 4 :] + b"\0" * (len(image) % 2)
    total = 0
    for (word,) in struct.iter_unpack("<H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total + len(image)


@pytest.mark.parametrize(
    "image",
    [bytes(64), b"\xff" * 64, b"\xff\xff" * 0xFFFF + bytes(8), bytes(range(256)) * 40 + b"\x07"],
)
def test_pe_checksum_is_the_folded_word_sum_plus_the_length(image: bytes) -> None:
    assert pe_checksum(image, 8) == _folded_word_sum(image, 8)


def test_stamp_sets_the_time_and_a_matching_checksum(tmp_path: Path) -> None:
    """objcopy stamps its build time; a reproducible UKI carries SOURCE_DATE_EPOCH instead."""
    image = bytearray(_pe({".cmdline": b"rw\0"}))
    struct.pack_into("<I", image, 0x40 + 4 + 4, 1_795_817_729)  # objcopy's "now"
    image += bytes(96)  # room for an optional header's CheckSum (+64), as a real PE has
    path = tmp_path / "uki.efi"
    path.write_bytes(image)
    stamp_pe(path, 1_764_028_800)
    stamped = path.read_bytes()
    checksum_at = 0x40 + 4 + 20 + 64
    assert struct.unpack_from("<I", stamped, 0x40 + 4 + 4) == (1_764_028_800,)
    assert struct.unpack_from("<I", stamped, checksum_at) == (
        _folded_word_sum(stamped, checksum_at),
    )
    # everything else is as it was
    assert stamped[:0x48] + stamped[0x4C:checksum_at] == bytes(
        image[:0x48] + image[0x4C:checksum_at]
    )
    stamp_pe(path, 1_764_028_800)
    assert path.read_bytes() == stamped
