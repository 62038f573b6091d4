"""Payloads assembled byte by byte from shared/spec/image-and-payload.md §4, with no Railcar
writer code, compared against what Railcar writes and read back by Railcar's reader."""

from __future__ import annotations

import bz2
import hashlib
import io
import random
import struct
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from railcar.payload import PayloadReader, TrustedKeys, generate_payload
from railcar.payload.signing import FileKeySigner
from railcar.release.keys import load_private_key
from tests.conftest import KeyPair, MakeFile
from tests.payload.pb import bfield, vfield

MIB = 1 << 20
UINT64_MAX = 2**64 - 1


def _op(
    op_type: int,
    offset: int,
    blob: bytes,
    start_block: int,
    num_blocks: int,
    with_hash: bool = True,
) -> bytes:
    body = vfield(1, op_type) + vfield(2, offset) + vfield(3, len(blob))
    body += bfield(6, vfield(1, start_block) + vfield(2, num_blocks))
    if with_hash:
        body += bfield(8, hashlib.sha256(blob).digest())
    return body


def _chunk(data: bytes) -> tuple[int, bytes]:
    packed = bz2.compress(data, 9)
    return (1, packed) if len(packed) < len(data) else (0, data)


def _expected_payload(image: bytes, kernel: bytes, keys: list[rsa.RSAPrivateKey]) -> bytes:
    """Spec §4.1/§4.2/§4.4/§4.5/§4.6, written out by hand."""
    blobs = b""
    part_ops = []
    for i in range(0, len(image), MIB):
        kind, blob = _chunk(image[i : i + MIB])
        part_ops.append(_op(kind, len(blobs), blob, i // 4096, 256))
        blobs += blob
    kernel_ops, noops = [], []
    for i in range(0, len(kernel), MIB):
        kind, blob = _chunk(kernel[i : i + MIB])
        kernel_ops.append(_op(kind, len(blobs), blob, i // 4096, 256))
        noops.append(_op(0, len(blobs), blob, UINT64_MAX, -(-len(blob) // 4096)))
        blobs += blob
    sig_size = len(keys) * (3 + 2 + 3 + 256)  # per Signature: tag+len(2), version(2), data(3+256)
    noops.append(_op(0, len(blobs), bytes(sig_size), UINT64_MAX, 1, with_hash=False))
    manifest = b"".join(bfield(1, op) for op in part_ops)
    manifest += b"".join(bfield(2, op) for op in noops)
    manifest += vfield(3, 4096) + vfield(4, len(blobs)) + vfield(5, sig_size)
    manifest += bfield(9, vfield(1, len(image)) + bfield(2, hashlib.sha256(image).digest()))
    procedure = vfield(1, 0) + b"".join(bfield(2, op) for op in kernel_ops)
    procedure += bfield(4, vfield(1, len(kernel)) + bfield(2, hashlib.sha256(kernel).digest()))
    manifest += bfield(10, procedure)
    signed = b"CrAU" + struct.pack(">QQ", 1, len(manifest)) + manifest + blobs
    digest = hashlib.sha256(signed).digest()
    versions = range(2 + 1 - len(keys), 3)
    sigs = b"".join(
        bfield(1, vfield(1, v) + bfield(2, k.sign(signed, padding.PKCS1v15(), hashes.SHA256())))
        for v, k in zip(versions, keys, strict=True)
    )
    assert len(sigs) == sig_size
    assert digest  # the signature covers exactly `signed`, i.e. [0, 20+N+signatures_offset)
    return signed + sigs


def _image() -> bytes:
    # 1 MiB that compresses, then 5,000 random-looking bytes that do not (an odd tail).
    compressible = b"usr/lib/railcar\n" * (MIB // 16)
    incompressible = random.Random(7).randbytes(5000)
    return compressible + incompressible


def test_generator_writes_the_spec_bytes_exactly(
    keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    image, kernel = _image(), hashlib.sha256(b"k").digest() * 100
    expected = _expected_payload(image, kernel, [load_private_key(keypair.private)])
    out = tmp_path / "update.gz"
    generate_payload(
        make_file("usr.bin", image),
        make_file("vmlinuz", kernel),
        out,
        [FileKeySigner(keypair.private)],
    )
    assert out.read_bytes() == expected


def test_two_signatures_get_versions_one_and_two(
    keypair: KeyPair, other_keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    image, kernel = _image(), b"\x00kernel" * 999
    keys = [load_private_key(keypair.private), load_private_key(other_keypair.private)]
    expected = _expected_payload(image, kernel, keys)
    out = tmp_path / "update.gz"
    generate_payload(
        make_file("usr.bin", image),
        make_file("vmlinuz", kernel),
        out,
        [FileKeySigner(keypair.private), FileKeySigner(other_keypair.private)],
    )
    assert out.read_bytes() == expected


def test_reader_accepts_a_hand_built_payload(keypair: KeyPair, other_keypair: KeyPair) -> None:
    image, kernel = _image(), b"vmlinuz" * 500
    payload = _expected_payload(image, kernel, [load_private_key(other_keypair.private)])
    reader = PayloadReader(io.BytesIO(payload))
    ops = list(reader.blobs())
    digests = reader.finish()
    assert [p.target for p, _ in ops] == ["partition", "partition", "kernel"]
    assert [p.op.type for p, _ in ops] == [1, 0, 1]
    assert digests.size == len(payload)
    assert digests.file_sha256 == hashlib.sha256(payload).digest()
    assert [s.version for s in digests.signatures] == [2]
    assert digests.signed_digest is not None
    trusted = TrustedKeys.from_files([keypair.public, other_keypair.public])
    assert trusted.check(digests.signed_digest, digests.signatures).key_source == str(
        other_keypair.public
    )
