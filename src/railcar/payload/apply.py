"""Applying a full payload to a partition (file or block device) and a kernel file.

Order of checks, after update_engine's pipeline (``shared/spec/image-and-payload.md`` §4.7):

1. from a local file, a first pass hashes the signed range and verifies the signature
   **before a byte is written**; from a stream (stdin, HTTP) there is no first pass;
2. the apply pass checks every blob's SHA-256, decompresses and writes on worker threads
   (``bz2`` and ``os.pwrite`` release the GIL), with the bytes in flight capped, so memory is
   bounded whatever the payload size;
3. at the end: the signature (again, over the bytes actually applied — a file swapped between
   passes is caught), then SHA-256 over ``new_partition_info.size`` bytes of the target and the
   kernel's size and hash.

Any failure raises; the caller must then not mark the target bootable. A kernel file and a new
partition image file are written under a temporary name and appear only once verified.
"""

from __future__ import annotations

import bz2
import collections
import hashlib
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from railcar.payload.errors import (
    ExtentError,
    PayloadError,
    PayloadFormatError,
    TargetError,
    TargetVerificationError,
)
from railcar.payload.layout import PlannedOp, TargetKind
from railcar.payload.manifest import InstallInfo
from railcar.payload.reader import (
    ByteSource,
    PayloadDigests,
    PayloadReader,
    check_blob,
    require_signed,
)
from railcar.payload.signing import SignatureCheck, TrustedKeys
from railcar.progress import NO_PROGRESS, Progress

# Bytes of blobs plus decompressed output allowed in flight across worker threads.
IN_FLIGHT_BUDGET = 48 << 20
_READ_PIECE = 4 << 20


class TargetFile:
    """A partition (block device or image file) or kernel file being written.

    A path that does not exist yet (and any kernel file) is written as ``.NAME.partial`` and
    renamed by :meth:`commit`; an existing partition is written in place.
    """

    def __init__(
        self,
        path: Path,
        *,
        what: str,
        replace_atomically: bool,
        window: tuple[int, int] | None = None,
    ) -> None:
        self.path, self.what = path, what
        exists = path.exists()
        if window is not None and (replace_atomically or not exists):
            raise TargetError(f"{what} {path}: a byte window needs an existing file or device")
        self._atomic = replace_atomically or not exists
        self._write_path = path.with_name(f".{path.name}.partial") if self._atomic else path
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if self._atomic else 0)
        try:
            self._fd = os.open(self._write_path, flags, 0o644)
            mode = os.fstat(self._fd).st_mode
        except OSError as exc:
            raise TargetError(f"cannot open {what} {path} for writing: {exc.strerror}") from exc
        self.is_block_device = stat.S_ISBLK(mode)
        self._device_size = os.lseek(self._fd, 0, os.SEEK_END) if self.is_block_device else None
        # A window (offset, length) confines every read and write to one partition of a disk
        # image, so an image file needs neither root nor a loop device.
        self._base, self._windowed = 0, window is not None
        if window is not None:
            self._base, self._device_size = window
        self._bound = 0

    def prepare(self, info: InstallInfo, block_size: int) -> None:
        """Check the target can hold ``info.size`` bytes; writes are bounded to its blocks."""
        assert info.size is not None
        if self._device_size is not None and self._device_size < info.size:
            raise TargetError(
                f"{self.what} {self.path} holds {self._device_size} bytes; the image needs "
                f"{info.size}"
            )
        self._bound = -(-info.size // block_size) * block_size
        if self._device_size is not None:
            self._bound = min(self._bound, self._device_size)

    def write(self, data: bytes | memoryview, offset: int) -> None:
        if offset + len(data) > self._bound:
            raise ExtentError(
                f"write of {len(data)} bytes at {offset} passes the end of the {self.what} "
                f"({self._bound} bytes)"
            )
        try:
            os.pwrite(self._fd, data, self._base + offset)
        except OSError as exc:
            raise TargetError(f"writing {self.what} {self.path}: {exc.strerror}") from exc

    def verify(self, info: InstallInfo) -> None:
        """Trim a regular file to size, flush to stable storage, and compare SHA-256 over
        ``info.size`` bytes. The flush runs on a second thread while this one hashes: both
        must finish, and neither needs the other's result.
        """
        assert info.size is not None
        if not (self.is_block_device or self._windowed) and (self._atomic or self.what == "kernel"):
            os.ftruncate(self._fd, info.size)
        with ThreadPoolExecutor(max_workers=1) as pool:
            flushed = pool.submit(os.fsync, self._fd)
            digest, read = _hash_fd(self._fd, info.size, self._base)
            flushed.result()
        if read != info.size or digest != info.hash:
            raise TargetVerificationError(
                f"{self.what} {self.path} does not match the payload: SHA-256 over "
                f"{info.size} bytes differs (read {read} bytes)"
            )

    def commit(self) -> None:
        os.close(self._fd)
        if self._atomic:
            os.replace(self._write_path, self.path)

    def abort(self) -> None:
        os.close(self._fd)
        if self._atomic:
            self._write_path.unlink(missing_ok=True)


def _hash_fd(fd: int, size: int, base: int = 0) -> tuple[bytes, int]:
    """SHA-256 of ``size`` bytes of ``fd`` from ``base`` and how many could be read."""
    h = hashlib.sha256()
    buf = bytearray(_READ_PIECE)
    view = memoryview(buf)
    offset = 0
    while offset < size:
        n = os.preadv(fd, [view[: min(_READ_PIECE, size - offset)]], base + offset)
        if n == 0:
            break
        h.update(view[:n])
        offset += n
    return h.digest(), offset


@dataclass(frozen=True)
class ApplyResult:
    digests: PayloadDigests
    signature: SignatureCheck
    partition: InstallInfo
    kernel: InstallInfo | None
    kernel_written: bool


def _decompress(planned: PlannedOp, blob: bytes) -> bytes:
    if not planned.compressed:
        return blob
    limit = planned.dst_bytes
    decompressor = bz2.BZ2Decompressor()
    try:
        data = decompressor.decompress(blob, max_length=limit + 1)
    except (OSError, ValueError) as exc:
        raise PayloadFormatError(
            f"operation {planned.index}: REPLACE_BZ data is not a valid bzip2 stream ({exc})"
        ) from exc
    if len(data) > limit:
        raise ExtentError(
            f"operation {planned.index}: data decompresses past its extents' {limit} bytes"
        )
    if not decompressor.eof or decompressor.unused_data:
        raise PayloadFormatError(
            f"operation {planned.index}: REPLACE_BZ data is not exactly one bzip2 stream"
        )
    return data


def _apply_op(planned: PlannedOp, blob: bytes, target: TargetFile | None, block: int) -> None:
    check_blob(planned, blob)
    data = _decompress(planned, blob)
    if target is None:
        return
    padded_len = -(-len(data) // block) * block
    view = memoryview(data)
    pos = 0
    for start, length in planned.dst_ranges:
        if pos >= padded_len:
            break
        n = min(length, padded_len - pos)
        piece = view[pos : pos + n]
        if len(piece) < n:  # the zero padding of the last block
            piece = memoryview(bytes(piece) + bytes(n - len(piece)))
        target.write(piece, start)
        pos += n


def apply_stream(
    source: ByteSource,
    partition: TargetFile,
    kernel: TargetFile | None,
    trusted: TrustedKeys,
    *,
    expected_digest: bytes | None = None,
    workers: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> ApplyResult:
    """Apply one payload read from ``source``; see the module docstring for the checks."""
    workers = workers or os.cpu_count() or 1
    reader = PayloadReader(source)
    layout = reader.layout
    block = layout.manifest.effective_block_size
    partition.prepare(layout.partition_info, block)
    kernel_info = layout.kernel_info
    if kernel is not None:
        if kernel_info is None:
            raise TargetError(
                f"payload has no kernel procedure but a kernel output {kernel.path} was given",
                hint="omit --kernel-out for payloads without a kernel",
            )
        kernel.prepare(kernel_info, block)
    targets = {TargetKind.PARTITION: partition, TargetKind.KERNEL: kernel}

    pending: collections.deque[tuple[int, Future[None]]] = collections.deque()
    in_flight = 0
    progress.start("applying payload", layout.blobs_length)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for planned, blob in reader.blobs(check=False):
                cost = len(blob) + planned.dst_bytes
                target = targets.get(planned.target)
                pending.append((cost, pool.submit(_apply_op, planned, blob, target, block)))
                in_flight += cost
                while pending and (in_flight > IN_FLIGHT_BUDGET or len(pending) > 4 * workers):
                    done_cost, future = pending.popleft()
                    future.result()
                    in_flight -= done_cost
                progress.advance(len(blob))
            while pending:
                pending.popleft()[1].result()
        finally:
            for _, future in pending:
                future.cancel()
    progress.finish()
    digests = reader.finish()
    signed_digest = require_signed(digests)
    check = trusted.check(signed_digest, digests.signatures)
    if expected_digest is not None and signed_digest != expected_digest:
        raise PayloadError("payload changed between the signature check and the apply pass")
    partition.verify(layout.partition_info)
    if kernel is not None and kernel_info is not None:
        kernel.verify(kernel_info)
    return ApplyResult(digests, check, layout.partition_info, kernel_info, kernel is not None)


def verify_signature(source: ByteSource, trusted: TrustedKeys) -> tuple[bytes, SignatureCheck]:
    """First pass for local files: signature over the signed range, before any write."""
    reader = PayloadReader(source)
    reader.skip_blobs(check=False)
    digests = reader.finish()
    digest = require_signed(digests)
    return digest, trusted.check(digest, digests.signatures)


def apply_file_or_stream(
    payload: Path | None,
    stream: ByteSource | None,
    target: Path,
    kernel_out: Path | None,
    trusted: TrustedKeys,
    *,
    workers: int | None = None,
    progress: Progress = NO_PROGRESS,
    window: tuple[int, int] | None = None,
) -> ApplyResult:
    """Apply from a local file (signature first) or from a stream (signature at the end).

    ``window`` (offset, length) writes into that byte range of ``target`` (a partition inside
    a disk image) instead of the whole file."""
    expected = None
    if payload is not None:
        try:
            with open(payload, "rb") as f:
                expected, _ = verify_signature(f, trusted)
            source_file = open(payload, "rb")  # noqa: SIM115
        except OSError as exc:
            raise PayloadError(f"cannot read payload {payload}: {exc.strerror}") from exc
        source: ByteSource = source_file
    else:
        assert stream is not None
        source = stream
    part = TargetFile(target, what="partition", replace_atomically=False, window=window)
    kern = TargetFile(kernel_out, what="kernel", replace_atomically=True) if kernel_out else None
    try:
        result = apply_stream(
            source,
            part,
            kern,
            trusted,
            expected_digest=expected,
            workers=workers,
            progress=progress,
        )
    except BaseException:
        part.abort()
        if kern is not None:
            kern.abort()
        raise
    finally:
        if payload is not None:
            source_file.close()
    part.commit()
    if kern is not None:
        kern.commit()
    return result
