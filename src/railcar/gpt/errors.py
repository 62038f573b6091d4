"""Errors raised while reading, repairing or changing a GUID Partition Table.

::

    RailcarError
    └── GptError                          anything wrong with a GPT or with what was asked of it
        ├── GptFormatError                one copy of the table is not well formed
        │   ├── NoProtectiveMbrError      sector 0 has no 0x55AA signature or no 0xEE entry
        │   ├── BadSignatureError         the header does not start with ``EFI PART``
        │   ├── UnsupportedHeaderError    revision, header size or entry size not supported
        │   ├── HeaderCrcError            the header's CRC32 does not match its bytes
        │   ├── EntriesCrcError           the entry array's CRC32 does not match the header's
        │   ├── HeaderGeometryError       LBAs inconsistent with each other or with the disk
        │   └── EntryLayoutError          a partition outside the usable range, or overlapping
        ├── DiskError                     the disk as a whole cannot be used
        │   ├── TruncatedDiskError        the disk is too small to hold a GPT
        │   ├── NotGptDiskError           neither sector 1 nor the last sector holds a GPT header
        │   └── NoValidGptError           both copies are damaged; nothing to repair from
        └── PrioError                     a gptprio request that cannot be carried out
            ├── PartitionNotFoundError    no partition with that number, label or GUID
            ├── NotUsrPartitionError      the partition's type is not the USR type GUID
            ├── AttributeRangeError       priority or tries outside 0–15
            └── NoBootableUsrError        no USR partition has priority > 0 and tries or success

A copy that fails to parse raises a :class:`GptFormatError`; reading a disk catches those per copy
and only raises a :class:`DiskError` when neither copy is usable. Messages say what was found and
what was expected.
"""

from __future__ import annotations

from railcar.errors import RailcarError


class GptError(RailcarError):
    """Anything wrong with a GPT or with what was asked of it."""


class GptFormatError(GptError):
    """One copy of the table (header or entry array) is not well formed."""


class NoProtectiveMbrError(GptFormatError):
    """Sector 0 is not a protective MBR."""


class BadSignatureError(GptFormatError):
    """The header does not start with ``EFI PART``."""


class UnsupportedHeaderError(GptFormatError):
    """The header's revision, size or entry size is one Railcar does not read."""


class HeaderCrcError(GptFormatError):
    """The header's CRC32 does not match its bytes."""


class EntriesCrcError(GptFormatError):
    """The partition entry array's CRC32 differs from the one in its header."""


class HeaderGeometryError(GptFormatError):
    """The header's LBAs contradict each other or the size of the disk."""


class EntryLayoutError(GptFormatError):
    """A partition lies outside the usable range, ends before it starts, or overlaps another."""


class DiskError(GptError):
    """The disk as a whole cannot be used as a GPT disk."""


class TruncatedDiskError(DiskError):
    """The disk is too small to hold a GPT."""


class NotGptDiskError(DiskError):
    """Neither the primary nor the backup header location holds a GPT header."""


class NoValidGptError(DiskError):
    """Both copies of the GPT are damaged, so there is no good copy to repair from."""


class PrioError(GptError):
    """A gptprio request that cannot be carried out on this table."""


class PartitionNotFoundError(PrioError):
    """No partition with the requested number, label or unique GUID."""


class NotUsrPartitionError(PrioError):
    """The partition is not of the USR (``flatcar-usr``) type, so gptprio does not apply."""


class AttributeRangeError(PrioError):
    """A priority or tries value outside 0–15."""


class NoBootableUsrError(PrioError):
    """No USR partition has priority > 0 together with tries left or the successful bit."""
