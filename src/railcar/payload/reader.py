"""Sequential payload reading: header, manifest, every blob (hash-checked), signatures.

:class:`PayloadReader` reads from anything with ``read(n)`` — a file, a pipe, an HTTP body — in
one forward pass, never seeking, and keeps one SHA-256 over the bytes read. At the signature
boundary it snapshots that hash (the digest the signature covers) and continues it over the
signature blob (the whole-file SHA-256 that Omaha's ``sha256`` names), so both come from one
pass over the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from railcar.payload.errors import (
    HashMismatchError,
    ManifestDecodeError,
    TrailingDataError,
    TruncatedPayloadError,
    UnsignedPayloadError,
)
from railcar.payload.layout import PayloadLayout, PlannedOp, plan
from railcar.payload.manifest import (
    HEADER_SIZE,
    MANIFEST_SIZE_CAP,
    DeltaArchiveManifest,
    Signature,
    Signatures,
    decode_header,
    signature_versions,
    signatures_blob,
)

_PIECE = 1 << 20


class ByteSource(Protocol):
    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True)
class PayloadDigests:
    """What a complete read of a payload established."""

    signed_digest: bytes | None  # SHA-256 of [0, 20+N+signatures_offset); None if unsigned
    file_sha256: bytes  # SHA-256 of the whole file
    size: int
    signatures: tuple[Signature, ...]


class PayloadReader:
    """One forward pass over a payload; methods must be called in order."""

    def __init__(self, source: ByteSource, *, manifest_cap: int = MANIFEST_SIZE_CAP) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self._position = 0
        header = self._read_exact(HEADER_SIZE, "the header")
        manifest_len = decode_header(header, manifest_cap=manifest_cap)
        self.manifest_bytes = self._read_exact(manifest_len, "the manifest")
        self.manifest = DeltaArchiveManifest.decode(self.manifest_bytes)
        self.layout: PayloadLayout = plan(self.manifest, manifest_len)

    @property
    def position(self) -> int:
        return self._position

    def _read_exact(self, size: int, what: str) -> bytes:
        chunks: list[bytes] = []
        remaining = size
        while remaining:
            chunk = self._source.read(remaining)
            if not chunk:
                raise TruncatedPayloadError(
                    f"payload ends at byte {self._position} inside {what}; "
                    f"{remaining} more bytes were expected"
                )
            chunks.append(chunk)
            remaining -= len(chunk)
            self._position += len(chunk)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._hash.update(data)
        return data

    def blobs(self, *, check: bool = True) -> Iterator[tuple[PlannedOp, bytes]]:
        """Each applied operation with its blob.

        With ``check=False`` the caller must run :func:`check_blob` itself (the applier does,
        on its worker threads).
        """
        for planned in self.layout.ops:
            blob = self._read_exact(planned.blob_length, f"the data of operation {planned.index}")
            if check:
                check_blob(planned, blob)
            yield planned, blob

    def skip_blobs(self, *, check: bool = True) -> None:
        """Read every blob without keeping it; without ``check``, only the running hash."""
        if check:
            for _ in self.blobs():
                pass
            return
        remaining = self.layout.blobs_length
        buf = bytearray(_PIECE * 4)
        view = memoryview(buf)
        readinto = getattr(self._source, "readinto", None)
        while remaining:
            want = min(len(buf), remaining)
            if readinto is not None:
                n = readinto(view[:want])
                piece = view[:n]
            else:
                piece = memoryview(self._source.read(want))
                n = len(piece)
            if not n:
                raise TruncatedPayloadError(
                    f"payload ends at byte {self._position} inside the data; "
                    f"{remaining} more bytes were expected"
                )
            self._hash.update(piece)
            self._position += n
            remaining -= n

    def finish(self) -> PayloadDigests:
        """Read the signature blob (if any), check nothing follows, return the digests."""
        signed_digest = None
        signatures: tuple[Signature, ...] = ()
        if self.layout.signed:
            signed_digest = self._hash.copy().digest()
            blob = self._read_exact(self.layout.signatures_size, "the signature blob")
            signatures = _decode_signatures(blob)
        extra = self._source.read(1)
        if extra:
            raise TrailingDataError(
                f"payload continues past byte {self._position}, where the "
                f"{'signature blob' if self.layout.signed else 'last blob'} ends"
            )
        return PayloadDigests(signed_digest, self._hash.digest(), self._position, signatures)


def _decode_signatures(blob: bytes) -> tuple[Signature, ...]:
    """Parse the Signatures blob and insist on its canonical form.

    The blob is the one part of the file no signature covers; requiring exactly the encoding and
    version numbering update_engine's signer produces (``signature_versions``) leaves no byte of
    a payload that can change without failing verification.
    """
    try:
        parsed = Signatures.decode(blob)
    except ManifestDecodeError as exc:
        raise ManifestDecodeError(f"signature blob: {exc}") from exc
    raws = [s.data or b"" for s in parsed.signatures]
    if not raws or signatures_blob(raws) != blob:
        versions = [s.version for s in parsed.signatures]
        raise ManifestDecodeError(
            f"signature blob is not in canonical form (versions {versions}; expected "
            f"{signature_versions(len(raws))}, each with data, nothing else)"
        )
    return parsed.signatures


def check_blob(planned: PlannedOp, blob: bytes) -> None:
    if hashlib.sha256(blob).digest() != planned.op.data_sha256_hash:
        raise HashMismatchError(
            f"operation {planned.index} ({planned.target}): SHA-256 of its "
            f"{planned.blob_length}-byte blob differs from data_sha256_hash"
        )


def require_signed(digests: PayloadDigests) -> bytes:
    if digests.signed_digest is None:
        raise UnsignedPayloadError(
            "payload is unsigned (no signatures_offset in its manifest)",
            hint="sign it with 'railcar payload sign'",
        )
    return digests.signed_digest


def copy_exact(source: ByteSource, size: int) -> Iterator[bytes]:
    """Yield ``size`` bytes from ``source`` in pieces; raise if it ends early."""
    remaining = size
    while remaining:
        chunk = source.read(min(_PIECE, remaining))
        if not chunk:
            raise TruncatedPayloadError(f"input ended {remaining} bytes before its expected end")
        remaining -= len(chunk)
        yield chunk
