"""Errors raised while reading an image spec and building an image.

::

    RailcarError
    └── ImageError                  anything that stops an image from being built
        ├── SpecError               the TOML spec is unreadable or a setting is wrong
        ├── RootfsError             the Debian root filesystem cannot be built or is unusable
        ├── UsrImageError           /usr does not fit its partition, or verity failed
        └── DiskAssemblyError       the partition table or a filesystem cannot be written

Tool failures (mmdebstrap, mkfs.erofs, veritysetup, …) arrive as
:class:`railcar.runner.ToolError` with the tool's stderr tail. A failed build never leaves an
output directory that looks complete: outputs are written under a temporary name and renamed
into place last.
"""

from __future__ import annotations

from railcar.errors import RailcarError


class ImageError(RailcarError):
    """Anything that stops an image from being built."""


class SpecError(ImageError):
    """The TOML spec is unreadable or a setting is wrong (names the key and what was expected)."""


class RootfsError(ImageError):
    """The Debian root filesystem cannot be built or is missing something the image needs."""


class UsrImageError(ImageError):
    """/usr does not fit its partition, or its verity hash tree could not be made."""


class DiskAssemblyError(ImageError):
    """The partition table or one of the filesystems cannot be written."""
