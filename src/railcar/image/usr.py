"""/usr as one USR partition image: compressed erofs, then the dm-verity hash tree.

The image is exactly one partition long (:class:`~railcar.image.layout.VerityGeometry`): the
erofs filesystem from byte 0, zeros up to the fixed hash offset, then the verity superblock and
hash tree (``veritysetup format --hash-offset``, data and hash on the same file, as Flatcar's
``disk_util Verity()``). This file is ``railcar_production_update.bin`` — what a payload
writes, byte for byte — and what USR-A holds in a fresh disk image.

Reproducible: erofs gets a fixed UUID and timestamp, verity a fixed salt and UUID, all derived
from the spec (:mod:`railcar.image.layout`); the tree's file order is erofs's own sorted order.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from railcar.image.errors import UsrImageError
from railcar.image.layout import VERITY_BLOCK, VerityGeometry, derived_uuid, verity_salt
from railcar.image.spec import Compression, ImageSpec
from railcar.runner import run

_ROOT_HASH = re.compile(r"^Root hash:\s*([0-9a-f]{64})\s*$", re.MULTILINE)


@dataclass(frozen=True)
class UsrImage:
    path: Path
    root_hash: str
    filesystem_bytes: int
    geometry: VerityGeometry


def make_usr_image(spec: ImageSpec, usr: Path, out: Path, geometry: VerityGeometry) -> UsrImage:
    """Write the USR partition image for the tree ``usr`` to ``out``."""
    fs = out.with_name(out.name + ".erofs")
    compress = [] if spec.compression is Compression.NONE else [f"-z{spec.compression.value}"]
    run(
        [
            "mkfs.erofs",
            "--quiet",
            *compress,
            f"-T{spec.source_date_epoch}",
            f"-U{derived_uuid(spec, 'usr-erofs')}",
            fs,
            usr,
        ]
    )
    size = fs.stat().st_size
    if size > geometry.data_bytes:
        fs.unlink()
        raise UsrImageError(
            f"/usr is {size / 2**20:.0f} MiB as erofs, more than the"
            f" {geometry.data_bytes / 2**20:.0f} MiB a {geometry.partition_bytes >> 20} MiB"
            " USR partition holds before its hash tree",
            hint="raise partitions.usr or drop packages",
        )
    os.replace(fs, out)
    os.truncate(out, geometry.partition_bytes)
    text = run(
        [
            "veritysetup",
            "format",
            "--hash=sha256",
            f"--data-block-size={VERITY_BLOCK}",
            f"--hash-block-size={VERITY_BLOCK}",
            f"--data-blocks={geometry.data_blocks}",
            f"--hash-offset={geometry.hash_offset}",
            f"--salt={verity_salt(spec)}",
            f"--uuid={derived_uuid(spec, 'usr-verity')}",
            out,
            out,
        ]
    )
    found = _ROOT_HASH.search(text)
    if found is None:
        raise UsrImageError(f"veritysetup format printed no root hash: {text.strip()[-200:]}")
    if out.stat().st_size != geometry.partition_bytes:
        raise UsrImageError(
            f"the hash tree overran the partition: {out.stat().st_size} bytes,"
            f" expected {geometry.partition_bytes}"
        )
    return UsrImage(out, found.group(1), size, geometry)
