"""Errors from reading Omaha documents.

::

    RailcarError
    └── OmahaError                 anything wrong with an Omaha document
        ├── DocumentTooLargeError  body over the size cap (64 KiB by default)
        ├── ForbiddenXmlError      DTD, entity declaration or external reference
        ├── MalformedXmlError      not well-formed XML (incl. invalid UTF-8, truncation)
        └── InvalidDocumentError   well-formed, but not an Omaha v3 document we can use

The server answers the first three and the last with HTTP 400; the agent reports the
update_engine error codes 31 (XML parse) and 34 (response invalid) for them.
"""

from __future__ import annotations

from railcar.errors import RailcarError


class OmahaError(RailcarError):
    """An Omaha document could not be used."""


class DocumentTooLargeError(OmahaError):
    """The body is larger than the cap."""


class ForbiddenXmlError(OmahaError):
    """The document uses a DTD, entities or external references."""


class MalformedXmlError(OmahaError):
    """The body is not well-formed XML."""


class InvalidDocumentError(OmahaError):
    """Well-formed XML that is not a usable Omaha v3 document."""
