"""Applying to a real block device (a loop device made here), as a node writes its USR-B."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from railcar.payload import TrustedKeys, generate_payload
from railcar.payload.apply import apply_file_or_stream
from railcar.payload.errors import TargetError
from railcar.payload.signing import FileKeySigner
from tests.conftest import KeyPair, MakeFile, usr_like_bytes

MIB = 1 << 20


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    backing = tmp_path / "disk.img"
    backing.write_bytes(b"\xee" * (4 * MIB))
    device = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield Path(device), backing
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)


def test_apply_to_a_block_device(
    loop_device: tuple[Path, Path], keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    device, backing = loop_device
    image = usr_like_bytes(3 * MIB + 1000)
    out = tmp_path / "update.gz"
    generate_payload(
        make_file("usr", image), make_file("k", b"k" * 5000), out, [FileKeySigner(keypair.private)]
    )
    result = apply_file_or_stream(
        out, None, device, tmp_path / "vmlinuz-b", TrustedKeys.from_files([keypair.public])
    )
    assert result.partition.size == len(image)
    data = backing.read_bytes()
    assert data[: len(image)] == image
    assert data[3 * MIB + 4096 :] == b"\xee" * (MIB - 4096)  # past the image: untouched
    assert device.is_block_device()


def test_block_device_too_small_is_refused_before_writing(
    loop_device: tuple[Path, Path], keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    device, backing = loop_device
    out = tmp_path / "update.gz"
    generate_payload(
        make_file("usr", usr_like_bytes(5 * MIB)), None, out, [FileKeySigner(keypair.private)]
    )
    with pytest.raises(TargetError, match="holds 4194304 bytes; the image needs 5242880"):
        apply_file_or_stream(out, None, device, None, TrustedKeys.from_files([keypair.public]))
    assert backing.read_bytes() == b"\xee" * (4 * MIB)
