"""Full payload generation from a /usr image and a kernel, the way Flatcar's
``delta_generator -new_image … -new_kernel …`` does it (``full_update_generator.cc``,
``delta_diff_generator.cc``; ``shared/spec/image-and-payload.md`` §4.5):

* the image is cut into 1 MiB chunks; each is bzip2-compressed (level 9, like ``BzipCompress``)
  and becomes REPLACE_BZ, or REPLACE when compression does not make it strictly smaller
  (Railcar can ask for more: ``min_saving``, below);
* every op claims 256 blocks at ``offset / 4096``, even a short last chunk;
* the kernel is chunked the same way into a KERNEL procedure with its own ``new_info``;
* ``noop_operations`` repeat each procedure op (REPLACE, same blob and hash, sparse extent),
  for old clients that read field 2 as kernel operations;
* blobs follow operation order: partition ops, then the kernel's.

Unlike delta_generator, images whose size is not a multiple of 4 KiB are accepted (the client
pads the last block and hashes exactly ``new_partition_info.size`` bytes), and an empty kernel
gives a KERNEL procedure with no operations.

``min_saving`` (a percentage, 0 by default as in delta_generator) keeps a chunk REPLACE_BZ only
when bzip2 saves at least that share of it. Data that is compressed already (erofs with lz4
saves only about 30 % more under bzip2) then travels raw and costs the node no decompression,
which is most of an install's CPU on a slow node; zeros and sparse space still compress to
almost nothing. Any client applies both op types, so the payload stays compatible.

Chunks are compressed on all cores (``bz2`` releases the GIL) with a bounded number in flight,
and blobs go to a spool file next to the output, so memory stays flat whatever the image size.
"""

from __future__ import annotations

import bz2
import collections
import hashlib
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from railcar.payload.errors import PayloadError
from railcar.payload.manifest import (
    BLOCK_SIZE,
    CHUNK_SIZE,
    U32_MAX,
    DeltaArchiveManifest,
    Extent,
    InstallInfo,
    InstallOperation,
    InstallProcedure,
    OpType,
    ProcedureType,
    sparse_extent,
)
from railcar.payload.signing import PayloadSigner
from railcar.payload.writer import WrittenPayload, write_payload
from railcar.progress import NO_PROGRESS, Progress

BZIP2_LEVEL = 9  # bzip.cc BzipCompress: BZ2_bzBuffToBuffCompress(blockSize100k=9)


@dataclass(frozen=True)
class _Chunk:
    type: OpType
    blob: bytes
    sha256: bytes


def _compress(data: bytes, min_saving: int = 0) -> _Chunk:
    packed = bz2.compress(data, BZIP2_LEVEL)
    if len(packed) < len(data) and len(packed) * 100 <= len(data) * (100 - min_saving):
        return _Chunk(OpType.REPLACE_BZ, packed, hashlib.sha256(packed).digest())
    return _Chunk(OpType.REPLACE, data, hashlib.sha256(data).digest())


class _Spool:
    """Blobs appended in operation order to an unnamed temporary file."""

    def __init__(self, directory: Path) -> None:
        self.file: BinaryIO = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
        self.length = 0

    def append(self, blob: bytes) -> int:
        offset = self.length
        self.file.write(blob)
        self.length += len(blob)
        if self.length > U32_MAX:
            raise PayloadError(
                f"payload data passed {U32_MAX} bytes; CrAU data_offset/data_length are uint32"
            )
        return offset


def _open_input(path: Path, what: str) -> tuple[BinaryIO, int]:
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise PayloadError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(0)
    except OSError as exc:
        f.close()
        raise PayloadError(f"cannot determine the size of {what} {path}") from exc
    return f, size


def chunk_operations(
    path: Path,
    what: str,
    spool: _Spool,
    pool: ThreadPoolExecutor,
    workers: int,
    progress: Progress,
    min_saving: int = 0,
) -> tuple[list[InstallOperation], InstallInfo]:
    """Cut ``path`` into ops whose blobs are appended to ``spool``; return ops and new_info."""
    f, size = _open_input(path, what)
    image_hash = hashlib.sha256()
    ops: list[InstallOperation] = []
    pending: collections.deque[tuple[int, Future[_Chunk]]] = collections.deque()

    def collect() -> None:
        offset, future = pending.popleft()
        chunk = future.result()
        blob_offset = spool.append(chunk.blob)
        ops.append(
            InstallOperation(
                type=chunk.type,
                data_offset=blob_offset,
                data_length=len(chunk.blob),
                dst_extents=(Extent(offset // BLOCK_SIZE, CHUNK_SIZE // BLOCK_SIZE),),
                data_sha256_hash=chunk.sha256,
            )
        )

    progress.start(f"compressing {what}", size)
    with f:
        offset = 0
        while data := f.read(CHUNK_SIZE):
            image_hash.update(data)
            pending.append((offset, pool.submit(_compress, data, min_saving)))
            offset += len(data)
            while len(pending) > 2 * workers:
                collect()
                progress.advance(CHUNK_SIZE)
        while pending:
            collect()
            progress.advance(CHUNK_SIZE)
    progress.finish()
    if offset != size:
        raise PayloadError(f"{what} {path} changed size while being read ({size} → {offset})")
    return ops, InstallInfo(size, image_hash.digest())


def build_manifest(
    partition_ops: Sequence[InstallOperation],
    partition_info: InstallInfo,
    kernel: tuple[Sequence[InstallOperation], InstallInfo] | None,
) -> DeltaArchiveManifest:
    """The unsigned manifest, with the noop copies of every procedure op."""
    procedures: tuple[InstallProcedure, ...] = ()
    noops: tuple[InstallOperation, ...] = ()
    if kernel is not None:
        kernel_ops, kernel_info = kernel
        procedures = (InstallProcedure(ProcedureType.KERNEL, tuple(kernel_ops), None, kernel_info),)
        noops = tuple(
            InstallOperation(
                type=OpType.REPLACE,
                data_offset=op.data_offset,
                data_length=op.data_length,
                dst_extents=(sparse_extent(op.blob_length),),
                data_sha256_hash=op.data_sha256_hash,
            )
            for op in kernel_ops
        )
    return DeltaArchiveManifest(
        partition_operations=tuple(partition_ops),
        noop_operations=noops,
        block_size=BLOCK_SIZE,
        new_partition_info=partition_info,
        procedures=procedures,
    )


def generate_payload(
    usr: Path,
    kernel: Path | None,
    out: Path,
    signers: Sequence[PayloadSigner] = (),
    *,
    workers: int | None = None,
    min_saving: int = 0,
    progress: Progress = NO_PROGRESS,
) -> WrittenPayload:
    """Write a full payload for ``usr`` (+ ``kernel``) to ``out``; signed if signers are given.

    ``min_saving``: the percentage bzip2 must save for a chunk to be stored compressed."""
    if not 0 <= min_saving <= 100:
        raise PayloadError(f"min_saving must be a percentage from 0 to 100, not {min_saving}")
    workers = workers or os.cpu_count() or 1
    out_dir = out.parent if str(out.parent) else Path()
    if not out_dir.is_dir():
        raise PayloadError(f"output directory {out_dir} does not exist")
    spool = _Spool(out_dir)
    with spool.file, ThreadPoolExecutor(max_workers=workers) as pool:
        partition_ops, partition_info = chunk_operations(
            usr, "/usr image", spool, pool, workers, progress, min_saving
        )
        kernel_part = None
        if kernel is not None:
            kernel_part = chunk_operations(
                kernel, "kernel", spool, pool, workers, progress, min_saving
            )
        manifest = build_manifest(partition_ops, partition_info, kernel_part)
        spool.file.flush()
        spool.file.seek(0)
        return write_payload(out, manifest, spool.file, spool.length, signers, progress=progress)
