"""Errors raised while reading, writing, signing or applying CrAU payloads.

::

    RailcarError
    └── PayloadError                      anything wrong with a payload or its use
        ├── PayloadFormatError            the bytes are not a well-formed CrAU payload
        │   ├── BadMagicError             the file does not start with ``CrAU``
        │   ├── UnsupportedVersionError   file format version is not 1
        │   ├── ManifestTooLargeError     manifest length over the reader's cap
        │   ├── ManifestDecodeError       manifest is not a valid DeltaArchiveManifest
        │   ├── TruncatedPayloadError     the file ends before the manifest says it should
        │   ├── BlobLayoutError           gap, overlap or disorder between data blobs
        │   ├── UnsupportedOperationError op type unknown or not allowed in a full payload
        │   ├── ExtentError               destination extents malformed or out of bounds
        │   └── TrailingDataError         bytes after the signature blob
        ├── IntegrityError                bytes do not match the hashes that cover them
        │   ├── HashMissingError          an operation with data has no SHA-256
        │   ├── HashMismatchError         a blob's SHA-256 differs from its operation's
        │   └── TargetVerificationError   what was written differs from new_partition_info
        ├── SignatureError                signature missing or not trusted
        │   ├── UnsignedPayloadError      no Signatures blob at all
        │   ├── AlreadySignedError        asked to sign a payload that carries signatures
        │   └── NoTrustedSignatureError   no signature verifies with any trusted key
        └── TargetError                   the install target cannot take the image

Messages say what was found and what was expected.
"""

from __future__ import annotations

from railcar.errors import RailcarError


class PayloadError(RailcarError):
    """Anything wrong with a payload or with what was asked of it."""


class PayloadFormatError(PayloadError):
    """The bytes are not a well-formed CrAU payload."""


class BadMagicError(PayloadFormatError):
    """The file does not start with ``CrAU``."""


class UnsupportedVersionError(PayloadFormatError):
    """The header's file format version is not one Railcar reads."""


class ManifestTooLargeError(PayloadFormatError):
    """The header announces a manifest larger than the reader accepts."""


class ManifestDecodeError(PayloadFormatError):
    """The manifest is not a valid DeltaArchiveManifest protobuf."""


class TruncatedPayloadError(PayloadFormatError):
    """The input ended before the manifest said it would."""


class BlobLayoutError(PayloadFormatError):
    """Data blobs are not contiguous and in operation order."""


class UnsupportedOperationError(PayloadFormatError):
    """An operation type this reader does not apply."""


class ExtentError(PayloadFormatError):
    """Destination extents are malformed or outside the target."""


class TrailingDataError(PayloadFormatError):
    """Bytes follow the signature blob, which must end the file."""


class IntegrityError(PayloadError):
    """Bytes do not match the hash that covers them."""


class HashMissingError(IntegrityError):
    """An operation carries data but no SHA-256 of it."""


class HashMismatchError(IntegrityError):
    """A blob's SHA-256 differs from the one its operation names."""


class TargetVerificationError(IntegrityError):
    """The written partition or kernel differs from the manifest's size and hash."""


class SignatureError(PayloadError):
    """The payload's signatures are missing or untrusted."""


class UnsignedPayloadError(SignatureError):
    """The payload carries no Signatures blob."""


class AlreadySignedError(SignatureError):
    """Signing was asked of a payload that already carries signatures."""


class NoTrustedSignatureError(SignatureError):
    """No signature verifies with any of the trusted keys."""


class TargetError(PayloadError):
    """The install target cannot take the image (too small, unwritable, not found)."""
