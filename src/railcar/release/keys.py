"""Payload signing keys: generation, loading and fingerprints.

Payload keys are RSA (2048 bits like Flatcar's ``official-v2``, 4096 allowed) and sign with
PKCS#1 v1.5 over SHA-256 (``shared/spec/image-and-payload.md`` §4.6). Private keys are written
as unencrypted PKCS#8 PEM with mode 0600; public keys as SubjectPublicKeyInfo PEM, the form
update_engine reads from ``/usr/share/update_engine/update-payload-key.pub.pem``.

Errors::

    RailcarError
    └── SigningKeyError        a key file is missing, unreadable, not RSA or too small
        └── Pkcs11Error        the PKCS#11 module, token or object cannot be used
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from railcar.errors import RailcarError

PRIVATE_KEY_NAME = "payload-key.pem"
PUBLIC_KEY_NAME = "payload-key.pub.pem"
ALLOWED_BITS = (2048, 3072, 4096)
_PUBLIC_EXPONENT = 65537


class SigningKeyError(RailcarError):
    """A key file is missing, unreadable, not RSA, or of a size we do not use."""


class Pkcs11Error(SigningKeyError):
    """The PKCS#11 module, token or key object cannot be used."""


@dataclass(frozen=True)
class GeneratedKey:
    private_path: Path
    public_path: Path
    bits: int
    fingerprint: str


def fingerprint(key: rsa.RSAPublicKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex: stable across PEM re-encodings."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def generate_key(out_dir: Path, *, bits: int = 2048, overwrite: bool = False) -> GeneratedKey:
    if bits not in ALLOWED_BITS:
        raise SigningKeyError(
            f"--bits {bits} is not supported; use one of {', '.join(map(str, ALLOWED_BITS))}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists() and not overwrite:
            raise SigningKeyError(
                f"{path} already exists; refusing to overwrite a key",
                hint="choose another --out directory or pass --force",
            )
    key = rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_atomic(private_path, private_pem, mode=0o600)
    _write_atomic(public_path, public_pem, mode=0o644)
    return GeneratedKey(private_path, public_path, bits, fingerprint(key.public_key()))


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _check_bits(bits: int, path: Path) -> None:
    if bits < min(ALLOWED_BITS):
        raise SigningKeyError(f"{path} is a {bits}-bit RSA key; at least 2048 bits are required")


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(
            f"{path} is not an unencrypted PEM private key ({exc})",
            hint="expected PKCS#8 or PKCS#1 PEM as written by 'railcar key generate'",
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}; payload keys are RSA")
    _check_bits(key.key_size, path)
    return key


def load_public_key(path: Path) -> rsa.RSAPublicKey:
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(
            f"{path} is not a PEM public key ({exc})",
            hint="expected a SubjectPublicKeyInfo PEM such as payload-key.pub.pem",
        ) from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}; payload keys are RSA")
    _check_bits(key.key_size, path)
    return key
