"""The USR partition image (erofs + dm-verity) against what veritysetup makes on one file."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from railcar.image import parse_spec
from railcar.image.errors import UsrImageError
from railcar.image.layout import MIB, VERITY_BLOCK, derived_uuid, verity_geometry, verity_salt
from railcar.image.spec import ImageSpec
from railcar.image.usr import make_usr_image
from tests.imagebuild import EXAMPLE, example_spec_text


def _spec() -> ImageSpec:
    return parse_spec(example_spec_text("1.0.0"), path=EXAMPLE)


def _tree(root: Path) -> Path:
    usr = root / "usr"
    (usr / "bin").mkdir(parents=True)
    (usr / "bin" / "tool").write_bytes(os.urandom(300_000))
    (usr / "share" / "doc").mkdir(parents=True)
    (usr / "share" / "doc" / "README").write_text("read me\n" * 5000)
    (usr / "lib").mkdir()
    (usr / "lib" / "link").symlink_to("../bin/tool")
    return usr


def test_usr_image_is_what_veritysetup_makes_on_one_file(tmp_path: Path) -> None:
    """The hash tree is made in a file of its own and written at the hash offset; the result is
    byte for byte `veritysetup format --hash-offset` with data and hash on one file (Flatcar's
    layout), and verifies with the printed root hash."""
    spec = _spec()
    geometry = verity_geometry(16 * MIB)
    image = make_usr_image(spec, _tree(tmp_path), tmp_path / "usr.bin", geometry)
    assert image.path.stat().st_size == 16 * MIB
    assert not list(tmp_path.glob("usr.bin.*"))  # no erofs or hash tree file left beside it

    # The reference: the same filesystem, padded to the partition, formatted in place.
    reference = tmp_path / "reference.bin"
    with open(image.path, "rb") as src, open(reference, "wb") as dst:
        dst.write(src.read(geometry.hash_offset))
        dst.truncate(geometry.partition_bytes)
    printed = subprocess.run(
        [
            "veritysetup", "format", "--hash=sha256",
            f"--data-block-size={VERITY_BLOCK}", f"--hash-block-size={VERITY_BLOCK}",
            f"--data-blocks={geometry.data_blocks}", f"--hash-offset={geometry.hash_offset}",
            f"--salt={verity_salt(spec)}", f"--uuid={derived_uuid(spec, 'usr-verity')}",
            str(reference), str(reference),
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"\t{image.root_hash}" in printed.replace(" ", "")
    assert reference.read_bytes() == image.path.read_bytes()
    subprocess.run(
        ["veritysetup", "verify", f"--hash-offset={geometry.hash_offset}",
         str(image.path), str(image.path), image.root_hash],
        check=True, capture_output=True,
    )  # fmt: skip


def _features(image: Path) -> set[str]:
    out = subprocess.run(["dump.erofs", str(image)], capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("Filesystem features:"))
    return set(line.split(":", 1)[1].split())


@pytest.mark.parametrize("cluster_kib", [4, 64])
def test_cluster_size_reaches_the_filesystem(tmp_path: Path, cluster_kib: int) -> None:
    """usr.cluster_kib is mkfs.erofs's physical cluster: above one block the filesystem needs
    the kernel's big-pcluster feature (Linux 5.13+), and every file still reads back intact."""
    spec = dataclasses.replace(_spec(), cluster_kib=cluster_kib)
    usr = _tree(tmp_path)
    text = "".join(f"line {i} of a compressible file\n" for i in range(40_000))
    (usr / "share" / "text").write_text(text)
    image = make_usr_image(spec, usr, tmp_path / "usr.bin", verity_geometry(16 * MIB))
    assert ("big_pcluster" in _features(image.path)) == (cluster_kib > 4)
    out = tmp_path / "out"
    subprocess.run(
        ["fsck.erofs", f"--extract={out}", str(image.path)], check=True, capture_output=True
    )
    for name in ("bin/tool", "share/doc/README", "share/text"):
        assert (out / name).read_bytes() == (usr / name).read_bytes()


def test_a_usr_tree_too_large_for_the_slot_leaves_nothing(tmp_path: Path) -> None:
    spec = _spec()
    usr = _tree(tmp_path)
    (usr / "bin" / "big").write_bytes(os.urandom(3 * MIB))  # random: lz4 cannot shrink it
    with pytest.raises(UsrImageError, match="more than the"):
        make_usr_image(spec, usr, tmp_path / "usr.bin", verity_geometry(2 * MIB))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["usr"]
