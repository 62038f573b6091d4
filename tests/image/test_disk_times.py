"""Times in the disk image come from the spec's SOURCE_DATE_EPOCH, not the build host: ext4
partitions made from trees whose files have other times are the same bytes, and files written
to the ESP carry that time."""

from __future__ import annotations

import hashlib
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from railcar.image.bootentries import MtoolsEsp
from railcar.image.disk import TIME_FIELDS, make_ext4, time_commands
from railcar.image.errors import DiskAssemblyError
from railcar.image.spec import parse_spec
from tests.image.small import SMALL

SPEC = parse_spec(SMALL)


def _tree(root: Path, mtime: int) -> Path:
    (root / "etc/ssl").mkdir(parents=True)
    (root / "etc/ssl/cert.pem").write_text("certificate\n")
    (root / "etc/os release").write_text('quote " and space\n')
    (root / "etc/link").symlink_to("ssl/cert.pem")
    for path in [*root.rglob("*"), root]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


def _stat(image: Path, path: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", f'stat "{path}"', str(image)], capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip


def test_ext4_is_the_same_bytes_whatever_the_trees_times(tmp_path: Path) -> None:
    images = []
    for n, mtime in enumerate((1_000_000_000, 1_500_000_000)):
        tree = _tree(tmp_path / f"tree{n}", mtime)
        images.append(
            make_ext4(SPEC, tree, tmp_path / f"root{n}.img", label="ROOT", size_bytes=8 << 20)
        )
    digests = [hashlib.sha256(image.read_bytes()).hexdigest() for image in images]
    assert digests[0] == digests[1]
    header = subprocess.run(
        ["dumpe2fs", "-h", str(images[0])], capture_output=True, text=True, check=True
    )
    (written,) = [line for line in header.stdout.splitlines() if line.startswith("Last write")]
    assert written.endswith(datetime.fromtimestamp(SPEC.source_date_epoch, UTC).strftime("%Y"))
    stamp = f"0x{SPEC.source_date_epoch:08x}:00000000"
    for path in ("/", "/etc", "/etc/ssl/cert.pem", "/etc/os release", "/etc/link", "/lost+found"):
        stat = _stat(images[0], path)
        times = [line.split()[1] for line in stat.splitlines() if "time:" in line]
        assert times == [stamp] * len(TIME_FIELDS), (path, stat)


def test_commands_quote_names_and_refuse_a_newline(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree", 1)
    commands = time_commands(tree, 7).splitlines()
    assert commands[:4] == [f'sif "/" {field} @7' for field in TIME_FIELDS]
    assert 'sif "/etc/os release" mtime @7' in commands
    (tree / 'etc/q"uote').write_text("")
    assert 'sif "/etc/q""uote" ctime @7' in time_commands(tree, 7).splitlines()
    (tree / "etc/new\nline").write_text("")
    with pytest.raises(DiskAssemblyError, match="a newline in its name"):
        time_commands(tree, 7)


def test_esp_files_carry_the_build_time(tmp_path: Path) -> None:
    image = tmp_path / "esp.img"
    with open(image, "wb") as f:
        f.truncate(40 << 20)
    subprocess.run(["mkfs.vfat", "-F", "32", str(image)], capture_output=True, check=True)
    esp = MtoolsEsp(image, timestamp=SPEC.source_date_epoch)
    esp.write("loader/entries/a.conf", b"title a\n")
    listing = subprocess.run(
        ["mdir", "-i", str(image), "::/loader/entries"], capture_output=True, text=True,
        check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout  # fmt: skip
    day = datetime.fromtimestamp(SPEC.source_date_epoch, UTC).strftime("%Y-%m-%d")
    (entry,) = [line for line in listing.splitlines() if line.endswith(" a.conf")]
    assert day in entry
    (parent,) = [line for line in listing.splitlines() if line.startswith(". ")]
    assert day in parent
