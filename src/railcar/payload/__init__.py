"""CrAU update payloads (Flatcar/CoreOS ``update_engine`` format, major version 1).

Public surface:

* :func:`generate_payload` — /usr image (+ kernel) → payload, optionally signed;
* :func:`write_payload` / :func:`signing_digest` — offline/HSM signing of unsigned payloads;
* :class:`PayloadReader` — streaming, hash-checking reader;
* :func:`apply_file_or_stream` / :func:`apply_stream` — install into a partition and kernel;
* :func:`inspect_payload`;
* signers (:class:`FileKeySigner`, :class:`Pkcs11Signer`, :class:`DetachedSignature`) and
  :class:`TrustedKeys`;
* the error tree in :mod:`railcar.payload.errors`.
"""

from railcar.payload.apply import ApplyResult, TargetFile, apply_file_or_stream, apply_stream
from railcar.payload.generate import generate_payload
from railcar.payload.inspect import inspect_payload
from railcar.payload.reader import PayloadDigests, PayloadReader
from railcar.payload.signing import (
    DetachedSignature,
    FileKeySigner,
    PayloadSigner,
    Pkcs11Signer,
    TrustedKeys,
)
from railcar.payload.writer import WrittenPayload, signing_digest, write_payload

__all__ = [
    "ApplyResult",
    "DetachedSignature",
    "FileKeySigner",
    "PayloadDigests",
    "PayloadReader",
    "PayloadSigner",
    "Pkcs11Signer",
    "TargetFile",
    "TrustedKeys",
    "WrittenPayload",
    "apply_file_or_stream",
    "apply_stream",
    "generate_payload",
    "inspect_payload",
    "signing_digest",
    "write_payload",
]
