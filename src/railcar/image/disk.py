"""The disk image: a GPT in a regular file and each partition's content copied in.

No loop devices and no mounts: the table is written by ``sfdisk`` from
:func:`~railcar.image.layout.sfdisk_script`; ROOT and OEM are ext4 filesystems made from
directories (``mkfs.ext4 -d``); partition images are copied in extent by extent
(``SEEK_DATA``/``SEEK_HOLE``), so the disk stays as sparse as its parts.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from railcar.image.errors import DiskAssemblyError
from railcar.image.layout import DiskLayout, Partition, derived_uuid, sfdisk_script
from railcar.image.spec import ImageSpec
from railcar.runner import run

_CHUNK = 8 << 20


def make_ext4(spec: ImageSpec, tree: Path, out: Path, *, label: str, size_bytes: int) -> Path:
    """An ext4 filesystem of ``size_bytes`` holding ``tree``, with fixed UUID and times."""
    out.unlink(missing_ok=True)
    # mke2fs, and debugfs after it, take the superblock's and their own inodes' times from
    # E2FSPROGS_FAKE_TIME (e2fsprogs' own variable).
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(spec.source_date_epoch)}
    uuid = derived_uuid(spec, f"fs-{label}")
    cmd = [
        "mkfs.ext4", "-q", "-L", label, "-U", str(uuid),
        "-E", f"hash_seed={derived_uuid(spec, f'fs-{label}-hash')},root_owner=0:0",
        "-d", str(tree), str(out), f"{size_bytes // 1024}k",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise DiskAssemblyError(
            f"mkfs.ext4 for {label} failed: {proc.stderr.strip().splitlines()[-1:]}",
            hint=f"is the {label} partition large enough for its content?",
        )
    set_times(out, tree, spec.source_date_epoch, label=label, env=env)
    return out


TIME_FIELDS = ("atime", "mtime", "ctime", "crtime")


def time_commands(tree: Path, timestamp: int) -> str:
    """debugfs commands giving every inode of ``tree`` (the root included) each of
    :data:`TIME_FIELDS` = ``timestamp``. Paths are quoted for debugfs's parser (a quote inside
    is doubled); a name with a newline cannot be written, and is a
    :class:`DiskAssemblyError`."""
    paths = ["/"]
    for current, dirs, files in os.walk(tree):
        rel = os.path.relpath(current, tree)
        inside = "" if rel == "." else f"/{rel}"
        paths += [f"{inside}/{name}" for name in sorted([*dirs, *files])]
    lines = []
    for path in paths:
        if "\n" in path:
            raise DiskAssemblyError(f"cannot set the time of {path!r}: a newline in its name")
        quoted = '"' + path.replace('"', '""') + '"'
        lines += [f"sif {quoted} {field} @{timestamp}" for field in TIME_FIELDS]
    return "".join(f"{line}\n" for line in lines)


def set_times(image: Path, tree: Path, timestamp: int, *, label: str, env: dict[str, str]) -> None:
    """Every inode ``mkfs.ext4 -d`` copied from ``tree`` into ``image`` gets ``timestamp`` as
    its access, change, modification and creation time, so that the filesystem is the same
    bytes whenever the same tree is copied (mkfs.ext4 1.47.0 copies the tree's own times, and a
    file's change time is when it was last linked or written on the build host)."""
    proc = subprocess.run(
        ["debugfs", "-w", "-f", "-", str(image)], input=time_commands(tree, timestamp),
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    # debugfs goes on after a failed command and exits 0: its complaints are on stderr, after
    # its version banner.
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("debugfs ")]
    if proc.returncode != 0 or errors:
        raise DiskAssemblyError(f"debugfs setting the times in {label} failed: {errors[:3]}")


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each data extent of the open file ``fd`` of ``size`` bytes, in order
    (``SEEK_DATA``/``SEEK_HOLE``; a filesystem that keeps no holes reports one extent)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole remains
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        pos = end


def copy_sparse(source: Path, dest: Path, offset: int, limit: int) -> int:
    """Copy ``source``'s data extents into ``dest`` at ``offset``; bytes of data copied.

    Holes are skipped, so ``dest`` stays as sparse as ``source``. The kernel copies
    (``copy_file_range(2)``): for the 395 MiB of a /usr image, ~0.2 s instead of ~1.8 s through
    Python's buffers while the build hashes beside it (docs/PERFORMANCE.md)."""
    size = source.stat().st_size
    if size > limit:
        raise DiskAssemblyError(
            f"{source.name} is {size} bytes, more than its {limit}-byte partition"
        )
    copied = 0
    with open(source, "rb") as src, open(dest, "r+b") as dst:
        for start, end in data_extents(src.fileno(), size):
            copied += _copy_range(src.fileno(), dst.fileno(), start, end, offset)
    return copied


def _copy_range(src: int, dst: int, start: int, end: int, offset: int) -> int:
    """Bytes ``start``..``end`` of ``src`` to ``offset + start`` of ``dst``, by the kernel where
    it can (copy_file_range), else read and written in chunks."""
    pos = start
    try:
        while pos < end:
            n = os.copy_file_range(src, dst, end - pos, pos, offset + pos)
            if n == 0:
                raise DiskAssemblyError("a partition image became shorter while it was copied")
            pos += n
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        while pos < end:  # a filesystem pair the kernel cannot copy between
            block = os.pread(src, min(_CHUNK, end - pos), pos)
            if not block:
                raise DiskAssemblyError(
                    "a partition image became shorter while it was copied"
                ) from None
            os.pwrite(dst, block, offset + pos)
            pos += len(block)
    return end - start


def sparse_digest(path: Path, algo: str) -> str:
    """``algo``'s hex digest of ``path``, whose holes are hashed from a buffer of zeros rather
    than read: a disk image is mostly holes, and reading them costs a core as much as hashing."""
    h = hashlib.new(algo)
    zeros = memoryview(bytes(_CHUNK))
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        for start, end in [*data_extents(f.fileno(), size), (size, size)]:
            while pos < start:
                n = min(_CHUNK, start - pos)
                h.update(zeros[:n])
                pos += n
            f.seek(start)
            while pos < end:
                block = f.read(min(_CHUNK, end - pos))
                if not block:
                    raise DiskAssemblyError(f"{path} became shorter while it was hashed")
                h.update(block)
                pos += len(block)
    return h.hexdigest()


def new_disk(layout: DiskLayout, out: Path) -> Path:
    """A new sparse file of the layout's size holding only its partition table."""
    out.unlink(missing_ok=True)
    with open(out, "wb") as f:
        f.truncate(layout.size_bytes)
    script = out.with_name(out.name + ".sfdisk")
    script.write_text(sfdisk_script(layout))
    try:
        run(["sh", "-c", 'sfdisk --quiet --no-reread --no-tell-kernel "$1" < "$2"', "sh", out,
             script])  # fmt: skip
    finally:
        script.unlink()
    return out


def copy_in(layout: DiskLayout, label: str, image: Path, disk: Path) -> None:
    """Copy the partition image ``image`` into partition ``label`` of ``disk``."""
    partition: Partition = layout.by_label(label)
    copy_sparse(image, disk, partition.offset, partition.size_bytes)


def assemble(layout: DiskLayout, parts: dict[str, Path], out: Path) -> Path:
    """Write the partition table to a new sparse file and copy each partition image in."""
    new_disk(layout, out)
    for label, image in parts.items():
        copy_in(layout, label, image, out)
    return out
