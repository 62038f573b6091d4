"""The CrAU payload model: header constants and the DeltaArchiveManifest messages.

Layout and field numbers follow Flatcar's ``update_metadata.proto`` and ``delta_metadata.cc``
(flatcar/update_engine, src/update_engine/; ``shared/spec/image-and-payload.md`` §4.1–§4.2):

    offset 0   "CrAU"
    offset 4   uint64 BE file format version (1)
    offset 12  uint64 BE manifest length N
    offset 20  DeltaArchiveManifest, raw proto2 (not compressed)
    20+N       data blobs, in operation order; ``data_offset`` is relative to 20+N
    20+N+signatures_offset  Signatures message, the last bytes of the file

The same schema ships as ``update_metadata.proto`` next to this module, for ``protoc --decode``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from railcar.payload import wire
from railcar.payload.errors import (
    BadMagicError,
    ManifestTooLargeError,
    TruncatedPayloadError,
    UnsupportedVersionError,
)
from railcar.payload.wire import Field, Kind

# delta_metadata.cc kDeltaMagic / kDeltaVersion (flatcar/update_engine).
MAGIC = b"CrAU"
FORMAT_VERSION = 1
HEADER_SIZE = 20  # magic + uint64 version + uint64 manifest length
_HEADER = struct.Struct(">4sQQ")

# update_metadata.proto DeltaArchiveManifest.block_size default; Flatcar always uses 4096.
BLOCK_SIZE = 4096
# full_update_generator.cc kFullUpdateChunkSize: 1 MiB per operation.
CHUNK_SIZE = 1 << 20
# Extent.start_block == UINT64_MAX marks a sparse hole (update_metadata.proto kSparseHole).
SPARSE_HOLE = 0xFFFFFFFFFFFFFFFF
# payload_signer.cc kSignatureMessageCurrentVersion: the only version update_engine checks.
SIGNATURE_VERSION_CHECKED = 2
# Our reader's cap on the manifest: a 1 GiB /usr gives ~1,100 ops of ~60 bytes, so 16 MiB
# leaves room for 16 GiB images while refusing a header that asks us to buffer gigabytes.
MANIFEST_SIZE_CAP = 16 << 20
# InstallOperation.data_offset/data_length are uint32 (update_metadata.proto).
U32_MAX = 0xFFFFFFFF


class OpType(IntEnum):
    """InstallOperation.Type (update_metadata.proto)."""

    REPLACE = 0
    REPLACE_BZ = 1
    MOVE = 2
    BSDIFF = 3


class ProcedureType(IntEnum):
    """InstallProcedure.Type, Flatcar's extension (update_metadata.proto)."""

    KERNEL = 0
    PCR_POLICY = 1


@dataclass(frozen=True)
class Extent:
    start_block: int | None = None
    num_blocks: int | None = None

    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field(1, "start_block", Kind.UINT64),
        Field(2, "num_blocks", Kind.UINT64),
    )


@dataclass(frozen=True)
class InstallInfo:
    size: int | None = None
    hash: bytes | None = None

    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field(1, "size", Kind.UINT64),
        Field(2, "hash", Kind.BYTES),
    )


@dataclass(frozen=True)
class InstallOperation:
    type: int = OpType.REPLACE
    data_offset: int | None = None
    data_length: int | None = None
    src_extents: tuple[Extent, ...] = ()
    src_length: int | None = None
    dst_extents: tuple[Extent, ...] = ()
    dst_length: int | None = None
    data_sha256_hash: bytes | None = None

    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field(1, "type", Kind.UINT32),
        Field(2, "data_offset", Kind.UINT32),
        Field(3, "data_length", Kind.UINT32),
        Field(4, "src_extents", Kind.MESSAGE, repeated=True, message=Extent),
        Field(5, "src_length", Kind.UINT64),
        Field(6, "dst_extents", Kind.MESSAGE, repeated=True, message=Extent),
        Field(7, "dst_length", Kind.UINT64),
        Field(8, "data_sha256_hash", Kind.BYTES),
    )

    @property
    def blob_length(self) -> int:
        return self.data_length or 0


@dataclass(frozen=True)
class InstallProcedure:
    type: int | None = None
    operations: tuple[InstallOperation, ...] = ()
    old_info: InstallInfo | None = None
    new_info: InstallInfo | None = None

    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field(1, "type", Kind.UINT32),
        Field(2, "operations", Kind.MESSAGE, repeated=True, message=InstallOperation),
        Field(3, "old_info", Kind.MESSAGE, message=InstallInfo),
        Field(4, "new_info", Kind.MESSAGE, message=InstallInfo),
    )


@dataclass(frozen=True)
class DeltaArchiveManifest:
    partition_operations: tuple[InstallOperation, ...] = ()
    noop_operations: tuple[InstallOperation, ...] = ()
    block_size: int | None = None
    signatures_offset: int | None = None
    signatures_size: int | None = None
    old_partition_info: InstallInfo | None = None
    new_partition_info: InstallInfo | None = None
    procedures: tuple[InstallProcedure, ...] = ()

    # Fields 6 and 7 were old/new_kernel_info and are reserved upstream.
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field(1, "partition_operations", Kind.MESSAGE, repeated=True, message=InstallOperation),
        Field(2, "noop_operations", Kind.MESSAGE, repeated=True, message=InstallOperation),
        Field(3, "block_size", Kind.UINT32),
        Field(4, "signatures_offset", Kind.UINT64),
        Field(5, "signatures_size", Kind.UINT64),
        Field(8, "old_partition_info", Kind.MESSAGE, message=InstallInfo),
        Field(9, "new_partition_info", Kind.MESSAGE, message=InstallInfo),
        Field(10, "procedures", Kind.MESSAGE, repeated=True, message=InstallProcedure),
    )

    def encode(self) -> bytes:
        return wire.encode(self)

    @classmethod
    def decode(cls, buf: bytes | memoryview) -> DeltaArchiveManifest:
        return wire.decode(cls, buf)

    @property
    def effective_block_size(self) -> int:
        return BLOCK_SIZE if self.block_size is None else self.block_size

    @property
    def signed(self) -> bool:
        return self.signatures_offset is not None and self.signatures_size is not None

    def applied_operations(self) -> list[tuple[InstallProcedure | None, InstallOperation]]:
        """Operations in the order update_engine consumes blobs: partition, then procedures."""
        ops: list[tuple[InstallProcedure | None, InstallOperation]] = [
            (None, op) for op in self.partition_operations
        ]
        for proc in self.procedures:
            ops.extend((proc, op) for op in proc.operations)
        return ops


@dataclass(frozen=True)
class Signature:
    version: int | None = None
    data: bytes | None = None

    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field(1, "version", Kind.UINT32),
        Field(2, "data", Kind.BYTES),
    )


@dataclass(frozen=True)
class Signatures:
    signatures: tuple[Signature, ...] = ()

    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field(1, "signatures", Kind.MESSAGE, repeated=True, message=Signature),
    )

    def encode(self) -> bytes:
        return wire.encode(self)

    @classmethod
    def decode(cls, buf: bytes | memoryview) -> Signatures:
        return wire.decode(cls, buf)


def signature_versions(count: int) -> list[int]:
    """Versions for ``count`` signatures: the last is always 2, the checked slot.

    payload_signer.cc ConvertSignatureToProtobufBlob numbers them 2+1-n, ..., 2.
    """
    return [SIGNATURE_VERSION_CHECKED + 1 - count + i for i in range(count)]


def signatures_blob(raw_signatures: list[bytes]) -> bytes:
    versions = signature_versions(len(raw_signatures))
    return Signatures(
        tuple(Signature(v, s) for v, s in zip(versions, raw_signatures, strict=True))
    ).encode()


def sparse_extent(length: int, block_size: int = BLOCK_SIZE) -> Extent:
    """The pseudo-extent noop operations carry: a hole big enough for ``length`` bytes."""
    return Extent(SPARSE_HOLE, math.ceil(length / block_size))


def encode_header(manifest_len: int) -> bytes:
    return _HEADER.pack(MAGIC, FORMAT_VERSION, manifest_len)


def decode_header(header: bytes, *, manifest_cap: int = MANIFEST_SIZE_CAP) -> int:
    """Check the 20-byte header and return the manifest length."""
    if len(header) < HEADER_SIZE:
        raise TruncatedPayloadError(
            f"payload is {len(header)} bytes long; a CrAU header alone takes {HEADER_SIZE}"
        )
    magic, version, manifest_len = _HEADER.unpack(header[:HEADER_SIZE])
    if magic != MAGIC:
        raise BadMagicError(
            f"not a CrAU payload: starts with {magic!r}, expected {MAGIC!r}",
            hint="is this the update payload (…_update.gz) and not the /usr image or a gzip file?",
        )
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"payload file format version is {version}; Railcar reads version {FORMAT_VERSION}"
        )
    if manifest_len > manifest_cap:
        raise ManifestTooLargeError(
            f"manifest is {manifest_len} bytes; the cap is {manifest_cap} bytes"
        )
    return int(manifest_len)
