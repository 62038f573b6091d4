"""Assembling payload files: manifest + blobs + signatures, written atomically.

Generation (``generate.py``) and offline signing (``railcar payload sign``) both end here:
given an unsigned manifest and its blob area, :func:`write_payload` reserves room for the
signatures in the manifest (``signatures_offset``/``signatures_size`` plus the noop operation
that covers the signature blob, as Flatcar's ``delta_generator --signature_size`` does,
``shared/spec/image-and-payload.md`` §4.4, §4.6), hashes ``[0, 20+N+signatures_offset)`` while
writing, asks each signer to sign that digest, and appends the Signatures blob. The output
appears under its final name only when complete.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from railcar.payload import wire
from railcar.payload.errors import AlreadySignedError, PayloadError, SignatureError
from railcar.payload.manifest import (
    DeltaArchiveManifest,
    InstallOperation,
    OpType,
    encode_header,
    signatures_blob,
    sparse_extent,
)
from railcar.payload.reader import ByteSource, copy_exact
from railcar.payload.signing import PayloadSigner
from railcar.progress import NO_PROGRESS, Progress

_PIECE = 1 << 20


@dataclass(frozen=True)
class WrittenPayload:
    path: Path
    size: int
    file_sha256: bytes
    signed_digest: bytes | None
    signers: tuple[str, ...]


def reserve_signatures(
    manifest: DeltaArchiveManifest, blobs_length: int, signature_sizes: Sequence[int]
) -> DeltaArchiveManifest:
    """The manifest a signed payload carries: signature fields and the signature noop op."""
    if manifest.signed:
        raise AlreadySignedError(
            "payload is already signed; sign the unsigned payload with every key at once",
            hint="signatures cover the manifest, so adding one later would invalidate the others",
        )
    size = len(signatures_blob([bytes(n) for n in signature_sizes]))
    signature_op = InstallOperation(
        type=OpType.REPLACE,
        data_offset=blobs_length,
        data_length=size,
        dst_extents=(sparse_extent(size),),
    )
    return wire.replace(
        manifest,
        signatures_offset=blobs_length,
        signatures_size=size,
        noop_operations=(*manifest.noop_operations, signature_op),
    )


def signing_digest(manifest: DeltaArchiveManifest, blobs: ByteSource, blobs_length: int) -> bytes:
    """The SHA-256 a signer must sign for ``manifest`` (already carrying the reservation)."""
    h = hashlib.sha256()
    body = manifest.encode()
    h.update(encode_header(len(body)) + body)
    for chunk in copy_exact(blobs, blobs_length):
        h.update(chunk)
    return h.digest()


def write_payload(
    out: Path,
    manifest: DeltaArchiveManifest,
    blobs: ByteSource,
    blobs_length: int,
    signers: Sequence[PayloadSigner] = (),
    *,
    verify_keys: Sequence[rsa.RSAPublicKey] = (),
    progress: Progress = NO_PROGRESS,
) -> WrittenPayload:
    """Write header + manifest + blobs (+ signatures) to ``out`` atomically.

    ``manifest`` is unsigned; with signers, room for their signatures is reserved first. Each
    signature is checked against its signer's public key (or ``verify_keys`` for detached
    signatures) before the file is given its name.
    """
    if signers:
        manifest = reserve_signatures(manifest, blobs_length, [s.signature_size for s in signers])
    body = manifest.encode()
    head = encode_header(len(body)) + body
    tmp = out.with_name(f".{out.name}.partial")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            h.update(head)
            progress.start(f"writing {out.name}", blobs_length)
            _copy_and_hash(blobs, blobs_length, f, h, progress)
            progress.finish()
            digest = None
            if signers:
                digest = h.digest()
                raw = [signer.sign_digest(digest) for signer in signers]
                _check_signatures(digest, raw, signers, verify_keys)
                tail = signatures_blob(raw)
                f.write(tail)
                h.update(tail)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return WrittenPayload(out, size, h.digest(), digest, tuple(s.description for s in signers))


def _copy_and_hash(
    blobs: ByteSource, length: int, out: BinaryIO, h: hashlib._Hash, progress: Progress
) -> None:
    """Append ``length`` bytes of ``blobs`` to ``out`` and feed them to ``h``.

    From a real file, the kernel copies (``copy_file_range``) on one thread while this one hashes
    the same bytes from the page cache; otherwise, plain read/write.
    """
    try:
        src, start = blobs.fileno(), blobs.tell()  # type: ignore[attr-defined]
    except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
        for chunk in copy_exact(blobs, length):
            out.write(chunk)
            h.update(chunk)
            progress.advance(len(chunk))
        return
    out.flush()
    dst_start = out.tell()

    def kernel_copy() -> None:
        done = 0
        while done < length:
            n = os.copy_file_range(src, out.fileno(), length - done, start + done, dst_start + done)
            if n == 0:
                raise PayloadError(f"blob source ended {length - done} bytes early")
            done += n

    with ThreadPoolExecutor(max_workers=1) as pool:
        copying = pool.submit(kernel_copy)
        offset = 0
        while offset < length:
            piece = os.pread(src, min(_PIECE, length - offset), start + offset)
            if not piece:
                raise PayloadError(f"blob source ended {length - offset} bytes early")
            h.update(piece)
            offset += len(piece)
            progress.advance(len(piece))
        copying.result()
    out.seek(dst_start + length)


def _check_signatures(
    digest: bytes,
    raw: Sequence[bytes],
    signers: Sequence[PayloadSigner],
    verify_keys: Sequence[rsa.RSAPublicKey],
) -> None:
    for signature, signer in zip(raw, signers, strict=True):
        if len(signature) != signer.signature_size:
            raise SignatureError(
                f"{signer.description} made a {len(signature)}-byte signature; "
                f"{signer.signature_size} bytes were reserved"
            )
        own = signer.public_key()
        candidates = [own] if own is not None else list(verify_keys)
        if not candidates:
            raise SignatureError(
                f"cannot check {signer.description}: no public key to verify it with",
                hint="pass --verify-key PUB.pem for detached signatures",
            )
        if not any(_verifies(key, signature, digest) for key in candidates):
            raise SignatureError(
                f"{signer.description} does not verify over this payload's digest {digest.hex()}",
                hint="a detached signature must be made over the output of 'railcar payload "
                "digest' with the same --signature-size list",
            )


def _verifies(key: rsa.RSAPublicKey, signature: bytes, digest: bytes) -> bool:
    try:
        key.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def open_blob_area(path: Path) -> tuple[BinaryIO, DeltaArchiveManifest, int]:
    """Open an unsigned payload positioned at its first blob: (file, manifest, blobs length)."""
    from railcar.payload.reader import PayloadReader

    try:
        f = open(path, "rb")  # noqa: SIM115 (returned to the caller, who closes it)
    except OSError as exc:
        raise PayloadError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        reader = PayloadReader(f)
        layout = reader.layout
        if layout.signed:
            raise AlreadySignedError(
                f"{path} is already signed",
                hint="sign the unsigned payload ('generate --unsigned') with every key at once",
            )
        actual = os.fstat(f.fileno()).st_size
        if actual != layout.total_size:
            raise PayloadError(
                f"{path} is {actual} bytes; its manifest describes {layout.total_size}"
            )
    except BaseException:
        f.close()
        raise
    return f, reader.manifest, layout.blobs_length
