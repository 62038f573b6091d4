"""What a manifest promises, checked before any data is read: the pure core of payload reading.

:func:`plan` turns a decoded manifest into a :class:`PayloadLayout` — every operation with its
blob position and destination byte ranges — or raises a typed error. Rules (update_engine's
``payload_processor.cc`` and the AOSP ``update_payload`` checker, ``shared/spec/
image-and-payload.md`` §4.3–§4.4 and §7):

* blobs of applied operations (partition ops, then each procedure's ops) are contiguous and in
  order from offset 0, and end exactly at ``signatures_offset`` when the payload is signed;
* every operation with data carries a 32-byte SHA-256;
* only REPLACE and REPLACE_BZ (full payloads), with well-formed destination extents and no block
  claimed twice. Extents are nominal: Flatcar's full generator gives every op 256 blocks even for
  a short last chunk (``full_update_generator.cc``), and the client writes only the data, padded
  to the next block. Whether those bytes fit the target is the applier's check;
* ``noop_operations`` are ignored, as the current client ignores them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from railcar.payload.errors import (
    BlobLayoutError,
    ExtentError,
    HashMissingError,
    ManifestDecodeError,
    UnsupportedOperationError,
)
from railcar.payload.manifest import (
    BLOCK_SIZE,
    HEADER_SIZE,
    SPARSE_HOLE,
    DeltaArchiveManifest,
    InstallInfo,
    InstallOperation,
    InstallProcedure,
    OpType,
    ProcedureType,
)

# The largest destination one operation may cover. Flatcar writes 1 MiB ops; the cap bounds
# what one op can make the applier hold in memory.
MAX_OP_BYTES = 32 << 20


class TargetKind:
    PARTITION = "partition"
    KERNEL = "kernel"
    SKIPPED = "skipped"  # PCR policy and unknown procedure types: hashed, not written


@dataclass(frozen=True)
class PlannedOp:
    index: int
    target: str
    op: InstallOperation
    blob_offset: int  # relative to the end of the manifest
    blob_length: int
    dst_ranges: tuple[tuple[int, int], ...]  # (byte offset, byte length) in the target

    @property
    def dst_bytes(self) -> int:
        return sum(length for _, length in self.dst_ranges)

    @property
    def compressed(self) -> bool:
        return self.op.type == OpType.REPLACE_BZ


@dataclass(frozen=True)
class PayloadLayout:
    manifest_len: int
    manifest: DeltaArchiveManifest
    ops: tuple[PlannedOp, ...]
    blobs_length: int

    @property
    def data_start(self) -> int:
        return HEADER_SIZE + self.manifest_len

    @property
    def signed(self) -> bool:
        return self.manifest.signed

    @property
    def signed_range_end(self) -> int:
        """End of the bytes the signature covers: ``20 + N + signatures_offset``."""
        return self.data_start + self.blobs_length

    @property
    def signatures_size(self) -> int:
        return self.manifest.signatures_size or 0

    @property
    def total_size(self) -> int:
        return self.signed_range_end + self.signatures_size

    @property
    def partition_info(self) -> InstallInfo:
        info = self.manifest.new_partition_info
        assert info is not None and info.size is not None and info.hash is not None
        return info

    @property
    def kernel_info(self) -> InstallInfo | None:
        proc = kernel_procedure(self.manifest)
        return proc.new_info if proc else None


def kernel_procedure(manifest: DeltaArchiveManifest) -> InstallProcedure | None:
    for proc in manifest.procedures:
        if proc.type == ProcedureType.KERNEL:
            return proc
    return None


def _require_info(info: InstallInfo | None, what: str) -> InstallInfo:
    if info is None or info.size is None or info.hash is None:
        raise ManifestDecodeError(f"{what} must carry a size and a hash; it is missing or partial")
    if len(info.hash) != 32:
        raise ManifestDecodeError(f"{what}.hash is {len(info.hash)} bytes; SHA-256 is 32")
    return info


def plan(manifest: DeltaArchiveManifest, manifest_len: int) -> PayloadLayout:
    """Validate ``manifest`` and lay out every applied operation; pure, no IO."""
    block = manifest.effective_block_size
    if block != BLOCK_SIZE:
        raise ManifestDecodeError(f"block_size is {block}; CrAU payloads use {BLOCK_SIZE}")
    if manifest.old_partition_info is not None:
        raise UnsupportedOperationError(
            "payload carries old_partition_info: it is a delta payload; Railcar applies full "
            "payloads only (docs/adr/0003-delta-payloads.md)"
        )
    if (manifest.signatures_offset is None) != (manifest.signatures_size is None):
        raise ManifestDecodeError("signatures_offset and signatures_size must be set together")
    _require_info(manifest.new_partition_info, "new_partition_info")

    planned: list[PlannedOp] = []
    written: dict[str, list[tuple[int, int]]] = {TargetKind.PARTITION: [], TargetKind.KERNEL: []}
    offset = 0
    for proc, op in manifest.applied_operations():
        target = _target_of(proc)
        planned_op = _plan_op(op, len(planned), target, offset, block)
        if target in written:
            written[target].extend((s, s + n) for s, n in planned_op.dst_ranges)
        planned.append(planned_op)
        offset += planned_op.blob_length
    for target, spans in written.items():
        _check_no_overlap(target, spans)
    if manifest.signatures_offset is not None and manifest.signatures_offset != offset:
        raise BlobLayoutError(
            f"operation data ends at offset {offset} but signatures_offset is "
            f"{manifest.signatures_offset}; the signature blob must follow the last operation"
        )
    if manifest.signatures_size == 0:
        raise ManifestDecodeError("signatures_size is 0; a signed payload has a Signatures blob")
    return PayloadLayout(manifest_len, manifest, tuple(planned), offset)


def _target_of(proc: InstallProcedure | None) -> str:
    if proc is None:
        return TargetKind.PARTITION
    if proc.type == ProcedureType.KERNEL:
        _require_info(proc.new_info, "kernel procedure new_info")
        return TargetKind.KERNEL
    return TargetKind.SKIPPED


def _op_name(op_type: int) -> str:
    try:
        return OpType(op_type).name
    except ValueError:
        return f"unknown type {op_type}"


def _plan_op(op: InstallOperation, index: int, target: str, offset: int, block: int) -> PlannedOp:
    where = f"operation {index} ({target})"
    if op.type not in (OpType.REPLACE, OpType.REPLACE_BZ):
        raise UnsupportedOperationError(
            f"{where} is {_op_name(op.type)}; full payloads use only REPLACE and REPLACE_BZ"
        )
    length = op.data_length or 0
    if length == 0:
        raise ManifestDecodeError(f"{where} is {_op_name(op.type)} without data")
    if op.data_offset != offset:
        raise BlobLayoutError(
            f"{where} data_offset is {op.data_offset}; expected {offset} (blobs are contiguous "
            "and in operation order)"
        )
    if op.data_sha256_hash is None:
        raise HashMissingError(f"{where} carries {length} bytes of data but no data_sha256_hash")
    if len(op.data_sha256_hash) != 32:
        raise HashMissingError(
            f"{where} data_sha256_hash is {len(op.data_sha256_hash)} bytes; SHA-256 is 32"
        )
    if op.src_extents:
        raise ExtentError(f"{where} has src_extents; REPLACE operations read no source")
    if not op.dst_extents:
        raise ExtentError(f"{where} has no dst_extents")
    ranges: list[tuple[int, int]] = []
    for ext in op.dst_extents:
        if ext.start_block is None or not ext.num_blocks:
            raise ExtentError(f"{where} has an extent without start_block or num_blocks")
        if ext.start_block == SPARSE_HOLE and target != TargetKind.SKIPPED:
            raise ExtentError(f"{where} writes to a sparse hole; only noop operations may")
        ranges.append((ext.start_block * block, ext.num_blocks * block))
    dst_bytes = sum(n for _, n in ranges)
    if dst_bytes > MAX_OP_BYTES or length > MAX_OP_BYTES:
        raise ExtentError(
            f"{where} covers {max(dst_bytes, length)} bytes; Railcar applies operations of at "
            f"most {MAX_OP_BYTES} bytes"
        )
    if op.type == OpType.REPLACE and length > dst_bytes:
        raise ExtentError(f"{where} carries {length} bytes for extents of {dst_bytes} bytes")
    return PlannedOp(index, target, op, offset, length, tuple(ranges))


def _check_no_overlap(target: str, spans: list[tuple[int, int]]) -> None:
    spans.sort()
    for (_, prev_end), (start, _) in itertools.pairwise(spans):
        if start < prev_end:
            raise ExtentError(
                f"two operations write byte {start} of the {target}; a full payload writes each "
                "block once"
            )
