"""Signing through a real PKCS#11 token (SoftHSM2, created here): in one step with generate, and
offline (generate --unsigned → digest → sign), with the key generated inside the token."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from railcar.cli import cli
from railcar.payload import PayloadReader, TrustedKeys, generate_payload
from railcar.payload.signing import Pkcs11Signer
from railcar.release.keys import Pkcs11Error
from tests.conftest import KeyPair, MakeFile, usr_like_bytes

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4321"


@dataclass(frozen=True)
class Token:
    uri: str
    public_pem: Path


@pytest.fixture(scope="session")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    # SoftHSM reads its configuration once per process, when the module is first loaded, so one
    # token directory serves the whole session (each xdist worker is its own process).
    tmp_path = tmp_path_factory.mktemp("softhsm")
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "railcar-test",
            "--pin",
            PIN,
            "--so-pin",
            "87654321",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    lib = pkcs11.lib(MODULE)
    with lib.get_token(token_label="railcar-test").open(rw=True, user_pin=PIN) as session:
        public, _ = session.generate_keypair(
            pkcs11.KeyType.RSA, 2048, label="payload-key", id=b"\x01", store=True
        )
        modulus = int.from_bytes(public[pkcs11.Attribute.MODULUS], "big")
        exponent = int.from_bytes(public[pkcs11.Attribute.PUBLIC_EXPONENT], "big")
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.RSAPublicNumbers(exponent, modulus)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    public_pem = tmp_path / "hsm.pub.pem"
    public_pem.write_bytes(pem)
    yield Token(f"pkcs11:token=railcar-test;object=payload-key?pin-value={PIN}", public_pem)


def test_generate_signed_by_the_hsm_verifies(
    token: Token, make_file: MakeFile, tmp_path: Path
) -> None:
    out = tmp_path / "update.gz"
    generate_payload(
        make_file("usr", usr_like_bytes(1 << 20)),
        make_file("k", b"kernel" * 1000),
        out,
        [Pkcs11Signer(token.uri, module=MODULE)],
    )
    result = CliRunner().invoke(
        cli, ["payload", "verify", str(out), "--key", str(token.public_pem)]
    )
    assert result.exit_code == 0, result.output
    assert "signature v2" in result.output


def test_offline_flow_with_the_hsm_through_the_cli(
    token: Token, keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    runner = CliRunner()
    usr, kernel = make_file("usr", usr_like_bytes(2 << 20)), make_file("k", b"vmlinuz" * 3000)
    unsigned, signed = tmp_path / "unsigned.gz", tmp_path / "signed.gz"
    r = runner.invoke(
        cli,
        [
            "payload",
            "generate",
            "--usr",
            str(usr),
            "--kernel",
            str(kernel),
            "--out",
            str(unsigned),
            "--unsigned",
        ],
    )
    assert r.exit_code == 0, r.output
    # Key rotation: the old file key signs first (version 1), the HSM key last (version 2).
    r = runner.invoke(
        cli,
        [
            "payload",
            "sign",
            str(unsigned),
            "--out",
            str(signed),
            "--key",
            str(keypair.private),
            "--pkcs11-uri",
            token.uri,
            "--pkcs11-module",
            MODULE,
        ],
    )
    assert r.exit_code == 0, r.output
    with open(signed, "rb") as f:
        reader = PayloadReader(f)
        reader.skip_blobs()
        digests = reader.finish()
    assert [s.version for s in digests.signatures] == [1, 2]
    assert digests.signed_digest is not None
    for pub, version in ((keypair.public, 1), (token.public_pem, 2)):
        check = TrustedKeys.from_files([pub]).check(digests.signed_digest, digests.signatures)
        assert check.version == version


def test_wrong_pin_is_one_clear_line(token: Token, make_file: MakeFile, tmp_path: Path) -> None:
    uri = token.uri.replace(f"pin-value={PIN}", "pin-value=0000")
    r = CliRunner().invoke(
        cli,
        [
            "payload",
            "generate",
            "--usr",
            str(make_file("usr", b"x" * 4096)),
            "--out",
            str(tmp_path / "o.gz"),
            "--pkcs11-uri",
            uri,
            "--pkcs11-module",
            MODULE,
        ],
    )
    assert r.exit_code == 1
    assert "railcar: error: PIN rejected by token 'railcar-test'" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "o.gz").exists()


def test_unknown_object_is_reported(token: Token) -> None:
    with pytest.raises(Pkcs11Error, match="no private key matches"):
        Pkcs11Signer(token.uri.replace("object=payload-key", "object=nope"), module=MODULE)
