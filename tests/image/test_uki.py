"""The PE section reader refuses what is not a unified kernel image (the happy path is checked
against objcopy on a built image in test_build.py)."""

from __future__ import annotations

import struct

import pytest

from railcar.image.uki import UkiError, pe_section, uki_cmdline


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
