"""generate → verify → apply gives back the exact image and kernel, for awkward sizes."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from railcar.payload import PayloadReader, TargetFile, TrustedKeys, apply_stream, generate_payload
from railcar.payload.apply import apply_file_or_stream
from railcar.payload.errors import PayloadError
from railcar.payload.manifest import OpType
from railcar.payload.signing import FileKeySigner
from tests.conftest import KeyPair, MakeFile, usr_like_bytes

MIB = 1 << 20

SIZES = {
    "empty image": 0,
    "one byte": 1,
    "one block minus one": 4095,
    "one block": 4096,
    "not a 4 KiB multiple": 3 * MIB + 777,
    "4 KiB multiple, not 1 MiB": 2 * MIB + 8192,
    "exactly 2 MiB": 2 * MIB,
}


@pytest.mark.parametrize("name", SIZES)
def test_round_trip_image_sizes(
    name: str, keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    image = usr_like_bytes(SIZES[name])
    kernel = usr_like_bytes(1234567, seed=3)
    _round_trip(image, kernel, keypair, make_file, tmp_path)


def test_round_trip_empty_kernel(keypair: KeyPair, make_file: MakeFile, tmp_path: Path) -> None:
    _round_trip(usr_like_bytes(MIB + 1), b"", keypair, make_file, tmp_path)


def test_round_trip_incompressible_data_uses_replace(
    keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    image = random.Random(5).randbytes(2 * MIB + 100)
    payload = _round_trip(image, os.urandom(5000), keypair, make_file, tmp_path)
    with open(payload, "rb") as f:
        types = {p.op.type for p in PayloadReader(f).layout.ops}
    assert types == {OpType.REPLACE}


def test_min_saving_stores_chunks_that_compress_too_little_raw(
    keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    # Three 1 MiB chunks: zeros (bzip2 saves ~100 %), half random (~50 %), random (nothing).
    noise = random.Random(7).randbytes(MIB + MIB // 2)
    image = bytes(MIB) + noise[: MIB // 2] + bytes(MIB // 2) + noise[MIB // 2 :]
    usr = make_file("usr.bin", image)
    types = {}
    for min_saving in (0, 40, 60, 100):
        out = tmp_path / f"update-{min_saving}.gz"
        generate_payload(usr, None, out, [FileKeySigner(keypair.private)], min_saving=min_saving)
        with open(out, "rb") as f:
            types[min_saving] = [p.op.type for p in PayloadReader(f).layout.ops]
        target = tmp_path / f"usr-{min_saving}"
        apply_file_or_stream(out, None, target, None, TrustedKeys.from_files([keypair.public]))
        assert target.read_bytes() == image
    bz, raw = OpType.REPLACE_BZ, OpType.REPLACE
    assert types == {0: [bz, bz, raw], 40: [bz, bz, raw], 60: [bz, raw, raw], 100: [raw] * 3}


def test_min_saving_outside_0_to_100_is_refused(
    keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    with pytest.raises(
        PayloadError, match="min_saving must be a percentage from 0 to 100, not 101"
    ):
        generate_payload(make_file("usr.bin", b"x"), None, tmp_path / "u.gz", [], min_saving=101)
    assert not (tmp_path / "u.gz").exists()


def test_round_trip_without_kernel(keypair: KeyPair, make_file: MakeFile, tmp_path: Path) -> None:
    image = usr_like_bytes(MIB + 5)
    out = tmp_path / "update.gz"
    generate_payload(make_file("usr.bin", image), None, out, [FileKeySigner(keypair.private)])
    target = tmp_path / "usr-b"
    result = apply_file_or_stream(out, None, target, None, TrustedKeys.from_files([keypair.public]))
    assert target.read_bytes() == image
    assert result.kernel is None


def test_apply_into_a_larger_existing_partition_leaves_the_rest(
    keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    image = usr_like_bytes(MIB + 10)
    out = tmp_path / "update.gz"
    generate_payload(make_file("usr.bin", image), None, out, [FileKeySigner(keypair.private)])
    partition = make_file("usr-b.part", b"\xaa" * (4 * MIB))
    apply_file_or_stream(out, None, partition, None, TrustedKeys.from_files([keypair.public]))
    data = partition.read_bytes()
    assert len(data) == 4 * MIB
    assert data[: len(image)] == image
    # The last block is zero-padded like update_engine does; everything after stays.
    assert data[len(image) : MIB + 4096] == bytes(MIB + 4096 - len(image))
    assert data[MIB + 4096 :] == b"\xaa" * (3 * MIB - 4096)


def _round_trip(
    image: bytes, kernel: bytes, keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> Path:
    out = tmp_path / "update.gz"
    written = generate_payload(
        make_file("usr.bin", image),
        make_file("vmlinuz", kernel),
        out,
        [FileKeySigner(keypair.private)],
        workers=2,
    )
    assert written.size == out.stat().st_size
    trusted = TrustedKeys.from_files([keypair.public])
    # From a local file: signature first, then apply.
    target, kernel_out = tmp_path / "usr-b", tmp_path / "vmlinuz-b"
    result = apply_file_or_stream(out, None, target, kernel_out, trusted, workers=2)
    assert target.read_bytes() == image
    assert kernel_out.read_bytes() == kernel
    assert result.partition.size == len(image)
    # From a stream: written as it arrives, verified at the end.
    target2 = tmp_path / "usr-c"
    partition = TargetFile(target2, what="partition", replace_atomically=False)
    apply_stream(io.BytesIO(out.read_bytes()), partition, None, trusted)
    partition.commit()
    assert target2.read_bytes() == image
    return out
