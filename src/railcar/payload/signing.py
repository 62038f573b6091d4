"""Payload signatures: who signs (file key, HSM over PKCS#11, a signature made elsewhere) and
who is trusted.

Flatcar signs the SHA-256 of payload bytes ``[0, 20 + manifest_len + signatures_offset)`` with
RSA PKCS#1 v1.5 (``shared/spec/image-and-payload.md`` §4.6). Signers here only ever see that
32-byte digest, never the payload, which is what lets the HSM step run on another machine
(``railcar payload digest`` → HSM → ``railcar payload sign --signature``).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from railcar.payload.errors import NoTrustedSignatureError, SignatureError
from railcar.payload.manifest import Signature
from railcar.release.keys import Pkcs11Error, fingerprint, load_private_key, load_public_key

# DER DigestInfo prefix for SHA-256, RFC 8017 §9.2 note 1; Flatcar's HSM flow prepends the same
# 19 bytes (scripts: file ``padding-pkcs11``) before a raw CKM_RSA_PKCS sign.
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
DIGEST_SIZE = 32


class PayloadSigner(Protocol):
    """Signs a payload digest; ``signature_size`` must be known before signing."""

    @property
    def description(self) -> str: ...

    @property
    def signature_size(self) -> int: ...

    def sign_digest(self, digest: bytes) -> bytes: ...

    def public_key(self) -> rsa.RSAPublicKey | None:
        """The key that verifies this signer's signatures, where the signer knows it."""
        ...


def _check_digest(digest: bytes) -> None:
    if len(digest) != DIGEST_SIZE:
        raise SignatureError(f"digest is {len(digest)} bytes; a SHA-256 digest is 32")


class FileKeySigner:
    """An RSA private key in a PEM file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._key = load_private_key(path)

    @property
    def description(self) -> str:
        return f"key {self._path} (sha256:{fingerprint(self._key.public_key())[:16]})"

    @property
    def signature_size(self) -> int:
        return (self._key.key_size + 7) // 8

    def sign_digest(self, digest: bytes) -> bytes:
        _check_digest(digest)
        return self._key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

    def public_key(self) -> rsa.RSAPublicKey | None:
        return self._key.public_key()


class DetachedSignature:
    """A signature produced elsewhere (an offline HSM), attached as-is.

    Its size is the file's size; whether it matches the digest is checked after assembly
    against the trusted keys, since this signer cannot know what it signed.
    """

    def __init__(self, path: Path) -> None:
        try:
            self._data = path.read_bytes()
        except OSError as exc:
            raise SignatureError(f"cannot read signature {path}: {exc.strerror}") from exc
        if len(self._data) not in (256, 384, 512):
            raise SignatureError(
                f"{path} is {len(self._data)} bytes; an RSA-2048/3072/4096 signature is 256, "
                "384 or 512 bytes",
                hint="the file must hold the raw RSA signature, not base64 or hex",
            )
        self._path = path

    @property
    def description(self) -> str:
        return f"detached signature {self._path}"

    @property
    def signature_size(self) -> int:
        return len(self._data)

    def sign_digest(self, digest: bytes) -> bytes:
        _check_digest(digest)
        return self._data

    def public_key(self) -> rsa.RSAPublicKey | None:
        return None


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 PKCS#11 URI that select a signing key."""

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    pin_value: str | None = None
    pin_source: str | None = None
    module_path: str | None = None

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Uri:
        if not uri.startswith("pkcs11:"):
            raise Pkcs11Error(
                f"{uri!r} is not a PKCS#11 URI", hint="expected pkcs11:token=NAME;object=LABEL"
            )
        path, _, query = uri[len("pkcs11:") :].partition("?")
        attrs: dict[str, str] = {}
        for part in filter(None, path.split(";")):
            name, sep, value = part.partition("=")
            if not sep:
                raise Pkcs11Error(f"PKCS#11 URI attribute {part!r} has no '='")
            attrs[name] = value
        for part in filter(None, query.split("&")):
            name, _, value = part.partition("=")
            attrs[name] = value
        if "token" not in attrs or ("object" not in attrs and "id" not in attrs):
            raise Pkcs11Error(
                f"PKCS#11 URI {uri!r} must name a token and an object (label) or id",
                hint="for example pkcs11:token=railcar;object=payload-key",
            )
        unquote = urllib.parse.unquote
        return cls(
            token=unquote(attrs["token"]),
            object=unquote(attrs["object"]) if "object" in attrs else None,
            id=urllib.parse.unquote_to_bytes(attrs["id"]) if "id" in attrs else None,
            pin_value=unquote(attrs["pin-value"]) if "pin-value" in attrs else None,
            pin_source=unquote(attrs["pin-source"]) if "pin-source" in attrs else None,
            module_path=unquote(attrs["module-path"]) if "module-path" in attrs else None,
        )


PKCS11_MODULE_ENV = "RAILCAR_PKCS11_MODULE"
PKCS11_PIN_ENV = "RAILCAR_PKCS11_PIN"


class Pkcs11Signer:
    """An RSA private key inside a PKCS#11 token (an HSM; SoftHSM2 in tests).

    The token receives DigestInfo || digest and signs with CKM_RSA_PKCS, as Flatcar's HSM flow
    does, so no hashing mechanism is required of the token.
    """

    def __init__(self, uri: str, *, module: str | None = None) -> None:
        self._uri = Pkcs11Uri.parse(uri)
        self._uri_text = uri.split("?", maxsplit=1)[0]
        module_path = module or self._uri.module_path or os.environ.get(PKCS11_MODULE_ENV)
        if not module_path:
            raise Pkcs11Error(
                "no PKCS#11 module given",
                hint=f"pass --pkcs11-module PATH, set {PKCS11_MODULE_ENV}, or add module-path= "
                "to the URI",
            )
        self._pin = self._resolve_pin()
        try:
            import pkcs11

            self._lib: Any = pkcs11.lib(module_path)
        except (ImportError, RuntimeError, OSError) as exc:
            raise Pkcs11Error(f"cannot load PKCS#11 module {module_path}: {exc}") from exc
        self._signature_size = self._with_key(lambda key: len(key[_attr("MODULUS")]))

    def _resolve_pin(self) -> str | None:
        if self._uri.pin_value is not None:
            return self._uri.pin_value
        if self._uri.pin_source is not None:
            source = self._uri.pin_source.removeprefix("file:")
            try:
                return Path(source).read_text().strip()
            except OSError as exc:
                raise Pkcs11Error(f"cannot read PIN from {source}: {exc.strerror}") from exc
        return os.environ.get(PKCS11_PIN_ENV)

    def _with_key(self, action: Any) -> Any:
        import pkcs11

        try:
            token = self._lib.get_token(token_label=self._uri.token)
        except (pkcs11.NoSuchToken, pkcs11.MultipleTokensReturned) as exc:
            raise Pkcs11Error(
                f"PKCS#11 token {self._uri.token!r} not found exactly once ({type(exc).__name__})"
            ) from exc
        try:
            with token.open(user_pin=self._pin) as session:
                selector: dict[str, Any] = {"object_class": pkcs11.ObjectClass.PRIVATE_KEY}
                if self._uri.object is not None:
                    selector["label"] = self._uri.object
                if self._uri.id is not None:
                    selector["id"] = self._uri.id
                key = session.get_key(**selector)
                return action(key)
        except pkcs11.NoSuchKey as exc:
            raise Pkcs11Error(f"no private key matches {self._uri_text}") from exc
        except pkcs11.PinIncorrect as exc:
            raise Pkcs11Error(f"PIN rejected by token {self._uri.token!r}") from exc
        except pkcs11.PKCS11Error as exc:
            raise Pkcs11Error(f"PKCS#11 failure on {self._uri_text}: {type(exc).__name__}") from exc

    @property
    def description(self) -> str:
        return f"PKCS#11 {self._uri_text}"

    @property
    def signature_size(self) -> int:
        return int(self._signature_size)

    def sign_digest(self, digest: bytes) -> bytes:
        import pkcs11

        _check_digest(digest)
        data = SHA256_DIGEST_INFO + digest
        signature = self._with_key(lambda key: key.sign(data, mechanism=pkcs11.Mechanism.RSA_PKCS))
        return bytes(signature)

    def public_key(self) -> rsa.RSAPublicKey | None:
        def read(key: Any) -> rsa.RSAPublicKey:
            modulus = int.from_bytes(key[_attr("MODULUS")], "big")
            exponent = int.from_bytes(key[_attr("PUBLIC_EXPONENT")], "big")
            return rsa.RSAPublicNumbers(exponent, modulus).public_key()

        return self._with_key(read)  # type: ignore[no-any-return]


def _attr(name: str) -> Any:
    import pkcs11

    return getattr(pkcs11.Attribute, name)


@dataclass(frozen=True)
class TrustedKey:
    source: str
    key: rsa.RSAPublicKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


@dataclass(frozen=True)
class SignatureCheck:
    """Which signature verified with which key."""

    version: int | None
    key_source: str
    key_fingerprint: str


class TrustedKeys:
    """The public keys a verifier trusts; a payload passes if any signature verifies."""

    def __init__(self, keys: Sequence[TrustedKey]) -> None:
        if not keys:
            raise SignatureError("no trusted public key given", hint="pass --key PUB.pem")
        self._keys = tuple(keys)

    @classmethod
    def from_files(cls, paths: Sequence[Path]) -> TrustedKeys:
        return cls([TrustedKey(str(p), load_public_key(p)) for p in paths])

    @property
    def keys(self) -> tuple[TrustedKey, ...]:
        return self._keys

    def check(self, digest: bytes, signatures: Sequence[Signature]) -> SignatureCheck:
        _check_digest(digest)
        for sig in signatures:
            for trusted in self._keys:
                if sig.data is None or len(sig.data) != (trusted.key.key_size + 7) // 8:
                    continue
                try:
                    trusted.key.verify(
                        sig.data, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
                    )
                except InvalidSignature:
                    continue
                return SignatureCheck(sig.version, trusted.source, trusted.fingerprint)
        raise NoTrustedSignatureError(
            f"none of the payload's {len(signatures)} signature(s) verifies with the "
            f"{len(self._keys)} trusted key(s)",
            hint="was the payload altered after signing, or signed with another key?",
        )
