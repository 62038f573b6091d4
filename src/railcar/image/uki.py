"""Read a section of a unified kernel image (a PE/COFF file): the embedded command line.

Only what boot entries need: the ``.cmdline`` section that :func:`railcar.image.esp.build_uki`
added. Layout per Microsoft's "PE Format" specification: the DOS header's ``e_lfanew`` (u32 at
offset 0x3c) points at the ``PE\\0\\0`` signature; the 20-byte COFF header follows, holding
``NumberOfSections`` (u16 at +2) and ``SizeOfOptionalHeader`` (u16 at +16); the section table
starts after the optional header, 40 bytes per section: ``Name`` (8 bytes, NUL padded),
``VirtualSize`` (+8), ``SizeOfRawData`` (+16), ``PointerToRawData`` (+20), all little endian.

And what a reproducible build needs (:func:`stamp_pe`): the COFF header's ``TimeDateStamp`` (u32
at +4), which objcopy sets to the current time, and the optional header's ``CheckSum`` (u32 at
+64 in PE32 and PE32+), which covers it.
"""

from __future__ import annotations

import struct
from pathlib import Path

from railcar.image.errors import DiskAssemblyError

# Microsoft PE Format: "MS-DOS Stub (Image Only)" and "Signature (Image Only)".
_E_LFANEW = 0x3C
_PE_SIGNATURE = b"PE\0\0"
_COFF_HEADER = 20
_SECTION_HEADER = 40
_TIME_DATE_STAMP = 4  # in the COFF header
_CHECKSUM = 64  # in the optional header


class UkiError(DiskAssemblyError):
    """A kernel file is not a PE image, or lacks the section asked for."""


def _coff_header(image: bytes | bytearray) -> int:
    if len(image) < 0x40 or image[:2] != b"MZ":
        raise UkiError("not a PE image: no MZ header")
    pe: int = struct.unpack_from("<I", image, _E_LFANEW)[0]
    if image[pe : pe + 4] != _PE_SIGNATURE:
        raise UkiError(f"not a PE image: no PE signature at {pe:#x}")
    return pe + 4


def pe_checksum(image: bytes | bytearray, checksum_at: int) -> int:
    """The PE image checksum: 16-bit words summed with end-around carry, the checksum field
    itself left out, plus the file's length (the ImageHlp ``CheckSumMappedFile`` algorithm)."""
    data = bytes(image[:checksum_at]) + bytes(4) + bytes(image[checksum_at + 4 :])
    # The little-endian words w_i make the number sum(w_i * 2**(16*i)), and 2**16 is 1 modulo
    # 0xFFFF: so that number modulo 0xFFFF is the folded sum, but that folding gives 0xFFFF,
    # never 0, for a non-zero sum divisible by 0xFFFF.
    number = int.from_bytes(data, "little")
    folded: int = number % 0xFFFF or (0xFFFF if number else 0)
    return (folded + len(image)) & 0xFFFFFFFF


def stamp_pe(path: Path, timestamp: int) -> None:
    """Set a PE file's ``TimeDateStamp`` to ``timestamp`` and its ``CheckSum`` to match."""
    image = bytearray(path.read_bytes())
    coff = _coff_header(image)
    struct.pack_into("<I", image, coff + _TIME_DATE_STAMP, timestamp)
    checksum_at = coff + _COFF_HEADER + _CHECKSUM
    struct.pack_into("<I", image, checksum_at, pe_checksum(image, checksum_at))
    path.write_bytes(image)


def pe_section(image: bytes, name: str) -> bytes:
    """The raw bytes of section ``name`` (at most its virtual size)."""
    coff = _coff_header(image)
    (sections,) = struct.unpack_from("<H", image, coff + 2)
    (optional,) = struct.unpack_from("<H", image, coff + 16)
    table = coff + _COFF_HEADER + optional
    wanted = name.encode()
    for i in range(sections):
        header = table + i * _SECTION_HEADER
        if header + _SECTION_HEADER > len(image):
            raise UkiError("truncated PE section table")
        raw_name = image[header : header + 8].rstrip(b"\0")
        if raw_name != wanted:
            continue
        (virtual_size,) = struct.unpack_from("<I", image, header + 8)
        raw_size, pointer = struct.unpack_from("<II", image, header + 16)
        size = min(virtual_size, raw_size) if virtual_size else raw_size
        if pointer + size > len(image):
            raise UkiError(f"section {name} runs past the end of the image")
        return image[pointer : pointer + size]
    raise UkiError(f"the kernel image has no {name} section")


def uki_cmdline(image: bytes) -> str:
    """The command line embedded in a unified kernel image."""
    return pe_section(image, ".cmdline").split(b"\0", 1)[0].decode().strip()
