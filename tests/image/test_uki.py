"""The UKI writer and the PE section reader on small PE files, and what they refuse (the built
image's UKI is checked against objcopy's output in test_build.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from railcar.image.uki import UkiError, pe_checksum, pe_section, uki_cmdline, write_uki


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


def _stub(sections: int = 2, headers: int = 0x400) -> bytes:
    """A small PE32+ EFI application: DOS header, signature, COFF header, a 240-byte optional
    header, ``sections`` sections of one 0x200 block each, and 40 bytes of COFF symbols."""
    image = bytearray(headers + 0x200 * sections + 40)
    image[:2] = b"MZ"
    struct.pack_into("<I", image, 0x3C, 0x80)
    image[0x80:0x84] = b"PE\0\0"
    coff, optional = 0x84, 0x84 + 20
    struct.pack_into("<HHIIIHH", image, coff, 0x8664, sections, 7, len(image) - 40, 2, 240, 0x22)
    struct.pack_into("<HBBIII", image, optional, 0x20B, 2, 40, 0x200, 0x200 * sections, 0)
    struct.pack_into("<QII", image, optional + 24, 0, 0x1000, 0x200)  # base, alignments
    struct.pack_into("<III", image, optional + 56, 0x1000 * (sections + 1), headers, 0x1234)
    for i in range(sections):
        struct.pack_into(
            "<8sIIIIIIHHI", image, optional + 240 + 40 * i,
            f".s{i}".encode(), 0x100, 0x1000 * (i + 1), 0x200, headers + 0x200 * i,
            0, 0, 0, 0, 0x60000020,
        )  # fmt: skip
        image[headers + 0x200 * i] = 0xC3  # ret
    return bytes(image)


def _signed(stub: bytes) -> bytes:
    """``stub`` with a certificate table (data directory 4) past its sections."""
    image = bytearray(stub)
    directories = 0x84 + 20 + 112
    struct.pack_into("<I", image, directories - 4, 16)  # NumberOfRvaAndSizes
    struct.pack_into("<II", image, directories + 8 * 4, len(image), 0x100)
    return bytes(image) + bytes(0x100)


def _fields(image: bytes) -> dict[str, int]:
    coff, optional = 0x84, 0x84 + 20
    return {
        "sections": struct.unpack_from("<H", image, coff + 2)[0],
        "time": struct.unpack_from("<I", image, coff + 4)[0],
        "symbols": struct.unpack_from("<I", image, coff + 8)[0],
        "initialized": struct.unpack_from("<I", image, optional + 8)[0],
        "image_size": struct.unpack_from("<I", image, optional + 56)[0],
        "checksum": struct.unpack_from("<I", image, optional + 64)[0],
    }


def test_writes_sections_after_the_stubs_own(tmp_path: Path) -> None:
    stub = _stub()
    out = tmp_path / "uki.efi"
    sections = [(".osrel", b"ID=railcar\n", 0x20000), (".linux", bytes(range(256)) * 9, 0x200000)]
    write_uki(stub, sections, out, timestamp=1_764_028_800)
    image = out.read_bytes()
    assert pe_section(image, ".osrel") == b"ID=railcar\n"
    assert pe_section(image, ".linux") == bytes(range(256)) * 9
    assert pe_section(image, ".s1") == stub[0x600 : 0x600 + 0x100]  # the stub's, unmoved
    assert image[:0x800][0x400:] == stub[0x400:0x800]
    fields = _fields(image)
    assert fields["sections"] == 4
    assert fields["time"] == 1_764_028_800 and fields["symbols"] == 0  # no COFF symbols
    assert fields["initialized"] == 0x400 + 0x200 + 0xA00  # the two new sections' raw sizes
    assert fields["image_size"] == 0x200000 + 0x1000  # the last section's end, aligned
    assert fields["checksum"] == _folded_word_sum(image, 0x84 + 20 + 64)
    # each section's raw data starts on the file alignment, after the stub's last section
    assert image.index(b"ID=railcar") == 0x800 and len(image) == 0x800 + 0x200 + 0xA00
    write_uki(stub, sections, tmp_path / "again.efi", timestamp=1_764_028_800)
    assert (tmp_path / "again.efi").read_bytes() == image


@pytest.mark.parametrize(
    ("stub", "sections", "message"),
    [
        (_stub(sections=15), [(".linux", b"k", 0x200000)], "no room for 1 more sections"),
        (_stub(), [(".linux", b"k", 0x2000)], r"an address from 0x3000 on .* not 0x2000"),
        (_stub(), [(".initrd-x", b"i", 0x200000)], "a name of at most 8 bytes"),
        (_stub()[:0x90], [(".linux", b"k", 0x200000)], "truncated: it ends in its headers"),
        (_stub()[:0x98] + bytes(0x400), [(".linux", b"k", 0x200000)], "magic 0x0, not PE32"),
        (_signed(_stub()), [(".linux", b"k", 0x200000)], "signed: adding sections would drop"),
    ],
)
def test_refuses_what_it_cannot_write(
    stub: bytes, sections: list[tuple[str, bytes, int]], message: str, tmp_path: Path
) -> None:
    with pytest.raises(UkiError, match=message):
        write_uki(stub, sections, tmp_path / "uki.efi", timestamp=0)
    assert not (tmp_path / "uki.efi").exists()
