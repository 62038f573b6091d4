"""Unified kernel images (PE/COFF files): made from systemd's EFI stub, and read back.

:func:`write_uki` appends the kernel, initrd, command line and os-release to the stub as PE
sections, as ``objcopy --add-section --change-section-vma`` did (ADR 0034); :func:`pe_section`
reads one back (boot entries read the ``.cmdline``). Layout per Microsoft's "PE Format"
specification, all little endian:

* the DOS header's ``e_lfanew`` (u32 at offset 0x3c) points at the ``PE\\0\\0`` signature;
* the 20-byte COFF header follows: ``NumberOfSections`` (u16 at +2), ``TimeDateStamp`` (u32 at
  +4), ``PointerToSymbolTable`` and ``NumberOfSymbols`` (u32 at +8, +12), and
  ``SizeOfOptionalHeader`` (u16 at +16);
* the optional header: ``Magic`` (u16 at +0: 0x10b PE32, 0x20b PE32+),
  ``SizeOfInitializedData`` (u32 at +8), ``ImageBase`` (u64 at +24 in PE32+, u32 at +28 in PE32),
  ``SectionAlignment`` and ``FileAlignment`` (u32 at +32, +36), ``SizeOfImage``,
  ``SizeOfHeaders`` and ``CheckSum`` (u32 at +56, +60, +64), ``NumberOfRvaAndSizes`` (u32 at
  +108 in PE32+, +92 in PE32) and the data directories after it, 8 bytes each;
* the section table after the optional header, 40 bytes per section: ``Name`` (8 bytes, NUL
  padded), ``VirtualSize`` (+8), ``VirtualAddress`` (+12), ``SizeOfRawData`` (+16),
  ``PointerToRawData`` (+20), ``Characteristics`` (u32 at +36).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

from railcar.image.errors import DiskAssemblyError

# Microsoft PE Format: "MS-DOS Stub (Image Only)" and "Signature (Image Only)".
_E_LFANEW = 0x3C
_PE_SIGNATURE = b"PE\0\0"
_COFF_HEADER = 20
_SECTION_HEADER = 40
_TIME_DATE_STAMP = 4  # in the COFF header
_CHECKSUM = 64  # in the optional header
_PE32, _PE32_PLUS = 0x10B, 0x20B  # the optional header's Magic
_CERTIFICATE_TABLE = 4  # "Optional Header Data Directories": Authenticode signatures
# "Section Flags": IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ, what objcopy gives an
# added section (objdump: CONTENTS, ALLOC, LOAD, READONLY, DATA).
_READ_ONLY_DATA = 0x00000040 | 0x40000000


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
    # The little-endian words w_i make the number sum(w_i * 2**(16*i)), and 2**16 is 1 modulo
    # 0xFFFF: so that number modulo 0xFFFF is the folded sum, but that folding gives 0xFFFF,
    # never 0, for a non-zero sum divisible by 0xFFFF.
    field = int.from_bytes(image[checksum_at : checksum_at + 4], "little")
    number = int.from_bytes(image, "little") - (field << (8 * checksum_at))
    folded: int = number % 0xFFFF or (0xFFFF if number else 0)
    return (folded + len(image)) & 0xFFFFFFFF


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def write_uki(stub: bytes, sections: Sequence[tuple[str, bytes, int]], out: Path, *,
              timestamp: int) -> None:  # fmt: skip
    """``stub`` (an EFI application) with ``sections`` appended, as (name, contents, virtual
    address) with names of at most 8 bytes, written to ``out``.

    The new sections' raw data follows the stub's last section, each padded to the file
    alignment; the COFF symbol table objcopy would carry along (only debuggers read it) is left
    out. The header gets the new section count, ``SizeOfInitializedData`` and ``SizeOfImage``,
    ``timestamp`` (SOURCE_DATE_EPOCH) as ``TimeDateStamp``, and the matching ``CheckSum``.
    """
    coff = _coff_header(stub)
    if len(stub) < coff + _COFF_HEADER + 64:
        raise UkiError("the EFI stub is truncated: it ends in its headers")
    count, optional_size = (struct.unpack_from("<H", stub, coff + at)[0] for at in (2, 16))
    optional = coff + _COFF_HEADER
    magic: int = struct.unpack_from("<H", stub, optional)[0]
    if magic not in (_PE32, _PE32_PLUS):
        raise UkiError(f"the EFI stub's optional header has magic {magic:#x}, not PE32 or PE32+")
    base_format, base_at = ("<Q", 24) if magic == _PE32_PLUS else ("<I", 28)
    directories = optional + (112 if magic == _PE32_PLUS else 96)
    (directory_count,) = struct.unpack_from("<I", stub, directories - 4)
    if directory_count > _CERTIFICATE_TABLE and any(
        stub[directories + 8 * _CERTIFICATE_TABLE : directories + 8 * _CERTIFICATE_TABLE + 8]
    ):
        raise UkiError("the EFI stub is signed: adding sections would drop its signature")
    image_base: int = struct.unpack_from(base_format, stub, optional + base_at)[0]
    section_alignment, file_alignment = struct.unpack_from("<II", stub, optional + 32)
    size_of_headers: int = struct.unpack_from("<I", stub, optional + 60)[0]
    table = optional + optional_size
    free = stub[table + count * _SECTION_HEADER : table + (count + len(sections)) * _SECTION_HEADER]
    if table + (count + len(sections)) * _SECTION_HEADER > size_of_headers or any(free):
        raise UkiError(f"the EFI stub's headers have no room for {len(sections)} more sections")
    raw_end = image_end = 0
    for i in range(count):
        header = table + i * _SECTION_HEADER
        if stub[header] == ord("/"):
            raise UkiError("the EFI stub has a section with a long name (in its string table)")
        virtual_size, address, raw_size, pointer = struct.unpack_from("<IIII", stub, header + 8)
        raw_end = max(raw_end, pointer + raw_size)
        image_end = max(image_end, address + max(virtual_size, raw_size))
    image = bytearray(stub[:raw_end])
    image += bytes(_align(raw_end, file_alignment) - raw_end)
    added = 0
    for i, (name, data, vma) in enumerate(sections):
        address, first = vma - image_base, _align(image_end, section_alignment)
        encoded = name.encode()
        if len(encoded) > 8 or address < first:
            raise UkiError(f"section {name}: a name of at most 8 bytes and an address from "
                           f"{image_base + first:#x} on are needed, not {vma:#x}")  # fmt: skip
        raw_size = _align(len(data), file_alignment)
        struct.pack_into(
            "<8sIIIIIIHHI", image, table + (count + i) * _SECTION_HEADER,
            encoded, len(data), address, raw_size, len(image), 0, 0, 0, 0, _READ_ONLY_DATA,
        )  # fmt: skip
        image += data
        image += bytes(raw_size - len(data))
        added += raw_size
        image_end = address + len(data)
    struct.pack_into("<H", image, coff + 2, count + len(sections))
    # TimeDateStamp, then PointerToSymbolTable and NumberOfSymbols: no COFF symbol table
    struct.pack_into("<III", image, coff + _TIME_DATE_STAMP, timestamp, 0, 0)
    initialized: int = struct.unpack_from("<I", image, optional + 8)[0]
    struct.pack_into("<I", image, optional + 8, initialized + added)
    struct.pack_into("<I", image, optional + 56, _align(image_end, section_alignment))
    checksum_at = optional + _CHECKSUM
    struct.pack_into("<I", image, checksum_at, pe_checksum(image, checksum_at))
    out.write_bytes(image)


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
