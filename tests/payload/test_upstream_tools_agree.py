"""Tools outside Railcar read what Railcar writes: protoc decodes the manifest against our .proto,
and the openssl CLI verifies the signature over the bytes the spec says it covers."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from railcar.payload import PayloadReader, generate_payload
from railcar.payload.signing import FileKeySigner
from tests.conftest import KeyPair, MakeFile, usr_like_bytes

PROTO = Path(__file__).parents[2] / "src/railcar/payload/update_metadata.proto"


def _payload(keypair: KeyPair, make_file: MakeFile, tmp_path: Path) -> Path:
    out = tmp_path / "update.gz"
    generate_payload(
        make_file("usr.bin", usr_like_bytes(3 * (1 << 20) + 4096)),
        make_file("vmlinuz", usr_like_bytes(1 << 20, seed=2) + b"tail"),
        out,
        [FileKeySigner(keypair.private)],
    )
    return out


def test_protoc_decodes_the_manifest(keypair: KeyPair, make_file: MakeFile, tmp_path: Path) -> None:
    payload = _payload(keypair, make_file, tmp_path)
    data = payload.read_bytes()
    manifest_len = int.from_bytes(data[12:20], "big")
    decoded = subprocess.run(
        [
            "protoc",
            f"--proto_path={PROTO.parent}",
            "--decode",
            "chromeos_update_engine.DeltaArchiveManifest",
            PROTO.name,
        ],
        input=data[20 : 20 + manifest_len],
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert decoded.count("partition_operations {") == 4
    assert decoded.count("noop_operations {") == 3  # two kernel chunks + the signature
    assert "type: REPLACE_BZ" in decoded
    assert "block_size: 4096" in decoded
    assert "start_block: 18446744073709551615" in decoded
    assert f"size: {3 * (1 << 20) + 4096}" in decoded
    assert "type: KERNEL" in decoded
    # Our own decoding of the same bytes agrees on the signature position.
    with open(payload, "rb") as f:
        reader = PayloadReader(f)
    assert f"signatures_offset: {reader.manifest.signatures_offset}" in decoded
    assert "signatures_size: 264" in decoded


def test_protoc_decodes_the_signature_blob(
    keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    data = _payload(keypair, make_file, tmp_path).read_bytes()
    decoded = subprocess.run(
        [
            "protoc",
            f"--proto_path={PROTO.parent}",
            "--decode",
            "chromeos_update_engine.Signatures",
            PROTO.name,
        ],
        input=data[-264:],
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert "version: 2" in decoded
    assert decoded.count("signatures {") == 1


def test_openssl_verifies_the_signature(
    keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    payload = _payload(keypair, make_file, tmp_path)
    data = payload.read_bytes()
    with open(payload, "rb") as f:
        layout = PayloadReader(f).layout
    signed = data[: layout.signed_range_end]
    # The raw 256 bytes of the one signature: the last bytes of its Signatures blob.
    (tmp_path / "sig.bin").write_bytes(data[-256:])

    def openssl_verify(signed_bytes: bytes) -> subprocess.CompletedProcess[str]:
        (tmp_path / "digest.bin").write_bytes(hashlib.sha256(signed_bytes).digest())
        return subprocess.run(
            [
                "openssl",
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                str(keypair.public),
                "-pkeyopt",
                "digest:sha256",
                "-in",
                str(tmp_path / "digest.bin"),
                "-sigfile",
                str(tmp_path / "sig.bin"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    result = openssl_verify(signed)
    assert result.returncode == 0, result.stderr
    assert "Signature Verified Successfully" in result.stdout
    # And the same check fails once one signed byte changes.
    assert openssl_verify(signed[:-1] + bytes([signed[-1] ^ 1])).returncode != 0
