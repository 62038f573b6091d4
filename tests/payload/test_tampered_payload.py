"""Altered, truncated, padded, unsigned or foreign-signed payloads are refused with a typed
error, and from a local file nothing is written to the target before the refusal."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from railcar.payload import PayloadReader, TargetFile, TrustedKeys, apply_stream, generate_payload
from railcar.payload.apply import apply_file_or_stream
from railcar.payload.errors import (
    BadMagicError,
    BlobLayoutError,
    HashMismatchError,
    ManifestTooLargeError,
    NoTrustedSignatureError,
    PayloadError,
    TrailingDataError,
    TruncatedPayloadError,
    UnsignedPayloadError,
    UnsupportedOperationError,
    UnsupportedVersionError,
)
from railcar.payload.manifest import InstallOperation, OpType
from railcar.payload.signing import FileKeySigner
from railcar.payload.wire import replace
from railcar.payload.writer import write_payload
from tests.conftest import KeyPair, MakeFile, usr_like_bytes

MIB = 1 << 20


@pytest.fixture
def payload(keypair: KeyPair, make_file: MakeFile, tmp_path: Path) -> bytes:
    out = tmp_path / "good.gz"
    generate_payload(
        make_file("usr.bin", usr_like_bytes(2 * MIB + 300)),
        make_file("vmlinuz", usr_like_bytes(70000, seed=9)),
        out,
        [FileKeySigner(keypair.private)],
    )
    return out.read_bytes()


def _layout_of(data: bytes) -> tuple[int, int]:
    with io.BytesIO(data) as f:
        layout = PayloadReader(f).layout
    return layout.data_start, layout.signed_range_end


def _flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :]


Mutation = Callable[[bytes], bytes]

CASES: dict[str, tuple[Mutation, type[PayloadError]]] = {
    "bit flip in a blob": (lambda d: _flip(d, _layout_of(d)[0] + 100), NoTrustedSignatureError),
    "bit flip in the last blob": (
        lambda d: _flip(d, _layout_of(d)[1] - 1),
        NoTrustedSignatureError,
    ),
    "bit flip in the signature": (lambda d: _flip(d, len(d) - 10), NoTrustedSignatureError),
    "truncated in the data": (lambda d: d[: len(d) // 2], TruncatedPayloadError),
    "truncated in the signature": (lambda d: d[:-1], TruncatedPayloadError),
    "truncated in the header": (lambda d: d[:11], TruncatedPayloadError),
    "bytes appended": (lambda d: d + b"\x00", TrailingDataError),
    "bad magic": (lambda d: b"CrAX" + d[4:], BadMagicError),
    "gzip instead": (lambda d: b"\x1f\x8b\x08\x00" + d[4:], BadMagicError),
    "format version 2": (lambda d: d[:4] + struct.pack(">Q", 2) + d[12:], UnsupportedVersionError),
    "manifest length 1 GiB": (
        lambda d: d[:12] + struct.pack(">Q", 1 << 30) + d[20:],
        ManifestTooLargeError,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_local_file_is_refused_before_any_write(
    case: str, payload: bytes, keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    mutate, error = CASES[case]
    bad = make_file("bad.gz", mutate(payload))
    target = make_file("usr-b", b"\x55" * (3 * MIB))
    kernel_out = tmp_path / "vmlinuz-b"
    with pytest.raises(error):
        apply_file_or_stream(
            bad, None, target, kernel_out, TrustedKeys.from_files([keypair.public])
        )
    assert target.read_bytes() == b"\x55" * (3 * MIB)
    assert not kernel_out.exists()
    assert list(tmp_path.glob(".*partial")) == []


@pytest.mark.parametrize(
    "case",
    ["bit flip in a blob", "bit flip in the last blob", "truncated in the data", "bytes appended"],
)
def test_stream_is_refused_at_the_end_at_the_latest(
    case: str, payload: bytes, keypair: KeyPair, tmp_path: Path
) -> None:
    mutate, _ = CASES[case]
    partition = TargetFile(tmp_path / "usr-b", what="partition", replace_atomically=False)
    with pytest.raises((HashMismatchError, TruncatedPayloadError, TrailingDataError)):
        apply_stream(
            io.BytesIO(mutate(payload)), partition, None, TrustedKeys.from_files([keypair.public])
        )
    partition.abort()
    assert not (tmp_path / "usr-b").exists()


def test_wrong_key_is_refused(payload: bytes, other_keypair: KeyPair, make_file: MakeFile) -> None:
    with pytest.raises(NoTrustedSignatureError):
        apply_file_or_stream(
            make_file("p.gz", payload),
            None,
            make_file("t", b""),
            None,
            TrustedKeys.from_files([other_keypair.public]),
        )


def test_unsigned_payload_is_refused(keypair: KeyPair, make_file: MakeFile, tmp_path: Path) -> None:
    out = tmp_path / "unsigned.gz"
    generate_payload(make_file("usr.bin", usr_like_bytes(5000)), None, out)
    target = make_file("t", b"keep")
    with pytest.raises(UnsignedPayloadError):
        apply_file_or_stream(out, None, target, None, TrustedKeys.from_files([keypair.public]))
    assert target.read_bytes() == b"keep"


def _resigned(
    payload: bytes,
    keypair: KeyPair,
    tmp_path: Path,
    change: Callable[[InstallOperation], InstallOperation],
) -> Path:
    """A payload whose first op was changed and then properly signed by the trusted key."""
    with io.BytesIO(payload) as f:
        reader = PayloadReader(f)
        manifest, start, length = (
            reader.manifest,
            reader.layout.data_start,
            reader.layout.blobs_length,
        )
    first = change(manifest.partition_operations[0])
    unsigned = replace(
        manifest,
        partition_operations=(first, *manifest.partition_operations[1:]),
        signatures_offset=None,
        signatures_size=None,
        noop_operations=manifest.noop_operations[:-1],
    )
    out = tmp_path / "resigned.gz"
    write_payload(
        out,
        unsigned,
        io.BytesIO(payload[start : start + length]),
        length,
        [FileKeySigner(keypair.private)],
    )
    return out


def test_signed_payload_with_a_wrong_operation_hash_is_refused(
    payload: bytes, keypair: KeyPair, tmp_path: Path
) -> None:
    bad = _resigned(payload, keypair, tmp_path, lambda op: replace(op, data_sha256_hash=bytes(32)))
    with pytest.raises(HashMismatchError, match="operation 0"):
        apply_file_or_stream(
            bad, None, tmp_path / "t", None, TrustedKeys.from_files([keypair.public])
        )


def test_signed_payload_with_a_gap_between_blobs_is_refused(
    payload: bytes, keypair: KeyPair, tmp_path: Path
) -> None:
    bad = _resigned(payload, keypair, tmp_path, lambda op: replace(op, data_offset=1))
    with pytest.raises(BlobLayoutError, match="expected 0"):
        apply_file_or_stream(
            bad, None, tmp_path / "t", None, TrustedKeys.from_files([keypair.public])
        )


def test_signed_delta_operation_is_refused(
    payload: bytes, keypair: KeyPair, tmp_path: Path
) -> None:
    bad = _resigned(payload, keypair, tmp_path, lambda op: replace(op, type=OpType.BSDIFF))
    with pytest.raises(UnsupportedOperationError, match="BSDIFF"):
        apply_file_or_stream(
            bad, None, tmp_path / "t", None, TrustedKeys.from_files([keypair.public])
        )
