"""/usr as one USR partition image: compressed erofs, then the dm-verity hash tree.

The image is exactly one partition long (:class:`~railcar.image.layout.VerityGeometry`): the
erofs filesystem from byte 0, zeros up to the fixed hash offset, then the verity superblock and
hash tree (:mod:`.verity`: the bytes ``veritysetup format --hash-offset`` writes with data and
hash on the same file, as Flatcar's ``disk_util Verity()``). This file is
``railcar_production_update.bin`` — what a payload writes, byte for byte — and what USR-A holds
in a fresh disk image.

Reproducible: erofs gets a fixed UUID and timestamp, verity a fixed salt and UUID, all derived
from the spec (:mod:`railcar.image.layout`); the tree's file order is erofs's own sorted order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from railcar.image.errors import UsrImageError
from railcar.image.layout import VerityGeometry, derived_uuid, verity_salt
from railcar.image.spec import Compression, ImageSpec
from railcar.image.verity import hash_area
from railcar.runner import run


@dataclass(frozen=True)
class UsrImage:
    path: Path
    root_hash: str
    filesystem_bytes: int
    geometry: VerityGeometry


def make_usr_image(spec: ImageSpec, usr: Path, out: Path, geometry: VerityGeometry) -> UsrImage:
    """Write the USR partition image for the tree ``usr`` to ``out``."""
    fs = out.with_name(out.name + ".erofs")
    compress = (
        []
        if spec.compression is Compression.NONE
        else [f"-z{spec.compression.value}", f"-C{spec.cluster_kib * 1024}"]
    )
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
    try:
        with open(fs, "rb") as data:
            area = hash_area(
                data, size, geometry.data_blocks,
                salt=bytes.fromhex(verity_salt(spec)), uuid=derived_uuid(spec, "usr-verity"),
            )  # fmt: skip
        if geometry.hash_offset + len(area.data) > geometry.partition_bytes:
            raise UsrImageError(
                f"the hash tree overran the partition: {len(area.data)} bytes at"
                f" {geometry.hash_offset}, in a partition of {geometry.partition_bytes}"
            )
        with open(fs, "r+b") as image:
            image.truncate(geometry.partition_bytes)
            image.seek(geometry.hash_offset)
            image.write(area.data)
    except BaseException:
        fs.unlink(missing_ok=True)
        raise
    os.replace(fs, out)
    return UsrImage(out, area.root_hash, size, geometry)
